"""/openapi.json: a valid OpenAPI 3.1 document that lists every route with every parameter and body
field its handler reads, and whose every $ref resolves inside the document."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from openapi_spec_validator import validate

from dashboards import web as pages_web
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.web_helpers import SECRET


@pytest.fixture
async def served(aiohttp_client: Any, settings: Settings) -> tuple[Any, dict[str, Any]]:
    app = create_app(settings.model_copy(update={"secret_key": SECRET}))
    api = await aiohttp_client(app)
    response = await api.get("/openapi.json")
    assert response.status == 200
    return app, await response.json()


async def test_the_document_is_valid_and_lists_every_api_route(served: tuple[Any, dict[str, Any]]) -> None:
    app, doc = served
    validate(doc)
    registered = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith("/api/v1/") and r.method != "HEAD"}
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert registered <= listed, sorted(registered - listed)
    for wanted in ("/v1/events", "/api/v1/coaching", "/api/v1/coaching/assign",
                   "/api/v1/coaching/assignments/{assignment_id}/schedule", "/api/v1/drawdowns"):
        assert wanted in doc["paths"], wanted


def _refs(node: Any) -> list[str]:
    """Every $ref, and every discriminator mapping's target (also a reference)."""
    if isinstance(node, dict):
        mapped = list(node["mapping"].values()) if isinstance(node.get("mapping"), dict) else []
        return [v for k, v in node.items() if k == "$ref"] + mapped + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_every_ref_resolves_in_the_document(served: tuple[Any, dict[str, Any]]) -> None:
    _app, doc = served
    refs = set(_refs(doc))
    assert "#/components/schemas/VisitEvent" in refs and "#/components/schemas/SessionEvent" in refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    assert "$defs" not in str(doc)


async def test_every_operation_declares_parameters_body_and_responses(served: tuple[Any, dict[str, Any]]) -> None:
    _app, doc = served
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(path.replace("}", "{").split("{")[1::2]), where
            assert all("schema" in p for p in op.get("parameters", [])), where
            assert "200" in op["responses"] and op["responses"]["200"].get("content"), where
            if path.startswith("/api/v1/"):
                assert any(code in op["responses"] for code in ("400", "401", "403", "404")), where
            if "application/json" not in op["responses"]["200"]["content"]:
                continue  # a download (GET /api/v1/me/export: a ZIP) has no JSON twin
            if path.startswith("/api/v1/"):
                answer = op["responses"]["200"]["content"]["application/json"]["schema"]
                assert answer.get("required") and set(answer["required"]) <= set(answer["properties"]), where
            if method == "post":
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert body.get("type") == "object" or "$ref" in body, where
            if path.startswith("/api/v1/") and method == "get":
                assert "format" in {p["name"] for p in op["parameters"] if p["in"] == "query"}, where
    drawdowns = {p["name"] for p in doc["paths"]["/api/v1/drawdowns"]["get"]["parameters"]}
    assert {"site", "manager", "step", "kind", "status", "team", "sort", "page", "format"} <= drawdowns
    assign = doc["paths"]["/api/v1/coaching/assign"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"manager", "step", "kind", "due", "target_minutes", "within_days"} <= set(assign["required"])
    assert assign["properties"]["flag_id"]["format"] == "uuid"


# --- every parameter a handler reads is declared -----------------------------------------------------------------

QUERY_RECEIVERS = {"q", "query", "request.query"}
BODY_RECEIVERS = {"fields", "form"}


def _receiver(node: ast.expr) -> str:
    return ast.unparse(node)


def names_read(fn: Callable[..., Any], seen: set[Any] | None = None) -> dict[str, set[str]]:
    """The query, body and path names a handler reads, following the dashboards' helpers it calls
    (chosen_site reads ?site=, period_of reads ?since= and ?until=, _text(fields, "manager") a field)."""
    seen = seen if seen is not None else set()
    found: dict[str, set[str]] = {"query": set(), "body": set(), "path": set()}
    if fn in seen:
        return found
    seen.add(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return found
    scope = getattr(fn, "__globals__", {})
    for node in ast.walk(tree):
        key: str | None = None
        receiver = ""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            receiver, key = _receiver(node.func.value), node.args[0].value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            receiver, key = _receiver(node.value), node.slice.value
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) \
                and node.args[0].id in BODY_RECEIVERS and isinstance(node.args[1], ast.Constant):
            receiver, key = node.args[0].id, str(node.args[1].value)  # _text(fields, "manager")
        if key is not None:
            if receiver in QUERY_RECEIVERS:
                found["query"].add(key)
            elif receiver in BODY_RECEIVERS:
                found["body"].add(key)
            elif receiver in ("request.match_info", "match"):
                found["path"].add(key)
        if isinstance(node, ast.Call):
            target = node.func.id if isinstance(node.func, ast.Name) else None
            called = scope.get(target) if target else None
            if inspect.isfunction(called) and called.__module__.startswith("dashboards."):
                for where, keys in names_read(called, seen).items():
                    found[where] |= keys
    return found


def _handlers(app: Any) -> dict[tuple[str, str], Callable[..., Any]]:
    """Each API route's page or action handler, from the closure add_page / add_action made."""
    handlers = {}
    for r in app.router.routes():
        if r.resource is None or not r.resource.canonical.startswith("/api/v1/") or r.method == "HEAD":
            continue
        inner = r.handler
        for cell in inner.__closure__ or ():  # api -> api_page (pages) or the handler itself (actions)
            if inspect.isfunction(cell.cell_contents) and cell.cell_contents.__name__ == "api_page":
                inner = cell.cell_contents
        if inner.__closure__ is None:  # a route of its own (the export), not made by add_page / add_action
            handlers[(r.method.lower(), r.resource.canonical)] = inner
            continue
        handler = next(c.cell_contents for c in inner.__closure__ if c.cell_contents.__class__.__name__ == "function"
                       and c.cell_contents.__name__ not in ("api_page", "html_page"))
        handlers[(r.method.lower(), r.resource.canonical)] = handler
    return handlers


async def test_every_parameter_a_handler_reads_is_in_the_document(served: tuple[Any, dict[str, Any]]) -> None:
    app, doc = served
    handlers = _handlers(app)
    assert len(handlers) == len(app[pages_web.API_ROUTES])
    checked = 0
    for (method, path), handler in handlers.items():
        op = doc["paths"][path][method]
        declared = {"query": {p["name"] for p in op["parameters"] if p["in"] == "query"},
                    "path": {p["name"] for p in op["parameters"] if p["in"] == "path"},
                    "body": set(op.get("requestBody", {}).get("content", {}).get("application/json", {})
                                .get("schema", {}).get("properties", {}))}
        read = names_read(handler)
        for where in ("query", "path", "body"):
            missing = read[where] - declared[where]
            assert not missing, f"{method.upper()} {path} reads {where} {sorted(missing)} it does not declare"
        checked += sum(len(v) for v in read.values())
    assert checked > 60  # the reader finds what handlers read (a broken reader would find nothing)


def test_the_reader_follows_helpers() -> None:
    from dashboards.pages import coaching, drawdowns, manager

    assert {"site", "sort", "page", "manager"} <= names_read(drawdowns.drawdowns_page)["query"]
    assert {"since", "until", "site", "table"} <= names_read(manager.manager_page)["query"]
    assert {"manager", "flag_id", "target_minutes", "site"} <= names_read(coaching.assign)["body"]
