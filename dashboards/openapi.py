"""/openapi.json: one OpenAPI 3.1 document for everything a program may call.

The collector's routes (events in, tracker config, health) and every JSON twin and action of the
dashboards and coaching, listed from the routes actually registered, with the parameters and body
fields each declared at registration (dashboards.web.Param): the same declarations are checked on
every request, so the document cannot fall behind what the server accepts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from collector.events import batch_schema
from dashboards.web import API_ROUTES, Param, json_response
from kernel import app_keys

ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                                          "code": {"type": "string"}},
         "required": ["error"]}
AUTH = [{"bearer": []}, {"cookie": []}]


def document(app: web.Application) -> dict[str, Any]:
    settings = app[app_keys.SETTINGS]
    schemas: dict[str, Any] = {"Error": ERROR}
    batch = _hoist_defs(batch_schema(settings.max_batch_events), schemas)
    schemas["EventBatch"] = batch
    paths: dict[str, dict[str, Any]] = {
        "/v1/events": {"post": {
            "summary": "Store a batch of step visits and service-session events (the tracker's endpoint)",
            "tags": ["collector"], "security": [],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/EventBatch"}}}},
            "responses": {"200": {"description": "stored durably; per-event rejections listed",
                                  "content": {"application/json": {"schema": INGESTED}}},
                          **_errors("400", "401", "403", "413", "415", "429", "503")}}},
        "/v1/config/{site_key}": {"get": {
            "summary": "The tracker's configuration of a site: steps and URL rules, nothing private",
            "tags": ["collector"], "security": [],
            "parameters": [{"name": "site_key", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "the site's public key"}],
            "responses": {"200": {"description": "configuration", "content": {"application/json": {
                "schema": {"type": "object"}}}}, "304": {"description": "not modified"}, **_errors("404")}}},
        "/v1/schema": {"get": {"summary": "The JSON Schema of an event batch", "tags": ["collector"], "security": [],
                               "responses": {"200": {"description": "JSON Schema", "content": {
                                   "application/json": {"schema": {"type": "object"}}}}}}},
        "/healthz": {"get": {"summary": "Liveness", "tags": ["operations"], "security": [],
                             "responses": {"200": {"description": "alive", "content": {
                                 "application/json": {"schema": {"type": "object"}}}}}}},
        "/readyz": {"get": {"summary": "Readiness: storage reachable, spool size", "tags": ["operations"],
                            "security": [], "responses": {
                                "200": {"description": "ready", "content": {
                                    "application/json": {"schema": {"type": "object"}}}},
                                **_errors("503")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"], "security": [],
                             "responses": {"200": {"description": "Prometheus text format", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}}}},
    }
    for route in app[API_ROUTES]:
        declared = route.params
        operation: dict[str, Any] = {
            "summary": route.summary,
            "description": f"Roles: {', '.join(route.roles)}. A signed-in browser session must also send "
                           "X-CSRF-Token on POST; a Bearer token need not.",
            "tags": [route.path.split("/")[3]],
            "parameters": [_parameter(p, "path") for p in declared.path]
            + [_parameter(p, "query") for p in declared.query],
            "responses": {"200": _answer(route),
                          **_errors("400", "401", "403", "404", "409")},
        }
        if route.method == "post":
            body = _body_schema(declared.body or ())
            operation["requestBody"] = {"required": bool(body.get("required")), "content": {
                "application/json": {"schema": body}, "application/x-www-form-urlencoded": {"schema": body}}}
        paths.setdefault(route.path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "stepwatch", "version": "1",
                 "description": "Ingest for the tracker, and the JSON twin of every dashboard page and action. "
                                "Errors are JSON: {\"error\": reason, \"field\": the parameter at fault}."},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "stepwatch tokens add USER NAME"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "stepwatch_session"}},
            "schemas": schemas},
        "security": AUTH,
        "paths": dict(sorted(paths.items())),
    }


def _answer(route: Any) -> dict[str, Any]:
    """A page's JSON (and CSV) twin; a download (a response schema with contentMediaType) is that file."""
    download = (route.response or {}).get("contentMediaType")
    if download:
        return {"description": "the file", "content": {download: {"schema": {"type": "string",
                                                                              "contentMediaType": download}}}}
    return {"description": "the page's data" if route.method == "get" else "done",
            "content": {"application/json": {"schema": route.response or {"type": "object"}},
                        **({"text/csv": {"schema": {"type": "string"}}} if route.method == "get" else {})}}


INGESTED = {"type": "object", "properties": {"accepted": {"type": "integer"}, "rejected": {"type": "array"}}}


def _parameter(p: Param, where: str) -> dict[str, Any]:
    found = {"name": p.name, "in": where, "required": where == "path" or p.required, "schema": p.schema()}
    if p.description:
        found["description"] = p.description
    return found


def _body_schema(fields: tuple[Param, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {
        f.name: {**f.schema(), **({"description": f.description} if f.description else {})} for f in fields}}
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return schema


def _hoist_defs(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema's own `$defs` moved to the document's components, its `#/$defs/...` refs rewritten to
    point there: inside an OpenAPI document a ref resolves against the document, not the schema."""
    for name, definition in schema.pop("$defs", {}).items():
        into[name] = _rewrite_refs(definition)
    return _rewrite_refs(schema)


def _rewrite_refs(node: Any) -> Any:
    """Every reference into `$defs`: a `$ref`, and a discriminator's mapping."""
    if isinstance(node, dict):
        return {k: _rewrite_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    if isinstance(node, str) and node.startswith("#/$defs/"):
        return "#/components/schemas/" + node.removeprefix("#/$defs/")
    return node


def _errors(*codes: str) -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {code: {"description": "error", "content": body} for code in codes}


async def openapi(request: web.Request) -> web.Response:
    return json_response(document(request.app))
