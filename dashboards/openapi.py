"""/openapi.json: one OpenAPI 3.1 document for everything a program may call.

The collector's routes (events in, tracker config, health) and every JSON twin and action of the
dashboards and coaching, listed from the routes actually registered, so it cannot fall behind.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from collector import keys
from collector.events import batch_schema
from dashboards.web import API_ROUTES, json_response

ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
         "required": ["error"]}
AUTH = [{"bearer": []}, {"cookie": []}]


def document(app: web.Application) -> dict[str, Any]:
    settings = app[keys.SETTINGS]
    paths: dict[str, dict[str, Any]] = {
        "/v1/events": {"post": {
            "summary": "Store a batch of step visits and service-session events (the tracker's endpoint)",
            "tags": ["collector"], "security": [],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": batch_schema(settings.max_batch_events)}}},
            "responses": {"200": {"description": "stored durably; per-event rejections listed"},
                          **_errors("400", "401", "403", "413", "415", "429", "503")}}},
        "/v1/config/{site_key}": {"get": {
            "summary": "The tracker's configuration of a site: steps and URL rules, nothing private",
            "tags": ["collector"], "security": [], "parameters": [_path_param("site_key")],
            "responses": {"200": {"description": "configuration"}, "304": {"description": "not modified"},
                          **_errors("404")}}},
        "/v1/schema": {"get": {"summary": "The JSON Schema of an event batch", "tags": ["collector"], "security": [],
                               "responses": {"200": {"description": "JSON Schema"}}}},
        "/healthz": {"get": {"summary": "Liveness", "tags": ["operations"], "security": [],
                             "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "Readiness: storage reachable, spool size", "tags": ["operations"],
                            "security": [], "responses": {"200": {"description": "ready"},
                                                          "503": {"description": "not ready"}}}},
    }
    for route in app[API_ROUTES]:
        names = re.findall(r"{(\w+)}", route.path)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "description": f"Roles: {', '.join(route.roles)}. A signed-in browser session must also send "
                           "X-CSRF-Token on POST; a Bearer token need not.",
            "tags": [route.path.split("/")[3]],
            "parameters": [_path_param(n) for n in names],
            "responses": {"200": {"description": "the page's data" if route.method == "get" else "done",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **_errors("400", "401", "403", "404", "409")},
        }
        if route.method == "get":
            operation["parameters"].append({"name": "format", "in": "query", "required": False,
                                            "schema": {"enum": ["json", "csv"]},
                                            "description": "csv: the page's main table as CSV"})
        else:
            operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(route.path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "stepwatch", "version": "1",
                 "description": "Ingest for the tracker, and the JSON twin of every dashboard page and action. "
                                "Errors are JSON: {\"error\": reason, \"field\": the form field at fault}."},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "stepwatch tokens add USER NAME"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "stepwatch_session"}},
            "schemas": {"Error": ERROR}},
        "security": AUTH,
        "paths": dict(sorted(paths.items())),
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _errors(*codes: str) -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {code: {"description": "error", "content": body} for code in codes}


async def openapi(request: web.Request) -> web.Response:
    return json_response(document(request.app))
