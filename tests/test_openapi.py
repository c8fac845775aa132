"""/openapi.json: a valid OpenAPI 3.1 document that lists every JSON route the application has."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from stepwatch.app import create_app
from stepwatch.settings import Settings


async def test_the_document_is_valid_and_lists_every_api_route(aiohttp_client: Any, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"secret_key": "test-secret-key-0123456789abcdef"}))
    api = await aiohttp_client(app)
    response = await api.get("/openapi.json")
    assert response.status == 200
    doc = await response.json()
    validate(doc)
    registered = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith("/api/v1/") and r.method != "HEAD"}
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert registered <= listed, sorted(registered - listed)
    for wanted in ("/v1/events", "/api/v1/coaching", "/api/v1/coaching/assign",
                   "/api/v1/coaching/assignments/{assignment_id}/schedule", "/api/v1/drawdowns"):
        assert wanted in doc["paths"], wanted
    assert doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]["type"]
