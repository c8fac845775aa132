"""The web edge refuses what a client sends wrong with a 4xx naming the parameter, never a 500; and every
response carries the security headers (HSTS only over https)."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards import web as pages_web
from kernel import sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import build_org
from tests.dashboard_data import make_flag
from tests.web_helpers import SECRET, csrf_of, login

NO_BOUNDARY = {"Content-Type": "multipart/form-data"}


@pytest.fixture
def org(client: storage.Client, site: sites.Site) -> Any:
    return build_org(client, site.name)


@pytest.fixture
def admin_token(client: storage.Client, org: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + users.create_token(client, "ada", "test", actor="test")}


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"secret_key": SECRET, "analysis_interval_s": 0})


@pytest.fixture
async def api(aiohttp_client: Any, app_settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(app_settings))


async def _json_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status == status, (response.status, await response.text())
    body = await response.json()
    assert body["error"]
    if field is not None:
        assert body.get("field") == field, body
    return body


# --- a form body that cannot be read --------------------------------------------------------------------------


async def test_multipart_without_a_boundary_is_400_on_every_post(api: Any, admin_token: dict[str, str]) -> None:
    posts = sorted({r.resource.canonical for r in api.app.router.routes()
                    if r.method == "POST" and r.resource is not None and not r.resource.canonical.startswith("/v1/")})
    assert "/login" in posts and "/logout" in posts and "/api/v1/coaching/assign" in posts
    for path in posts:
        concrete = (path.replace("{flag_id}", "3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40")
                    .replace("{assignment_id}", "3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40")
                    .replace("{message_id}", "3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40").replace("{step}", "offer"))
        response = await api.post(concrete, data=b"name=x", headers={**NO_BOUNDARY, **admin_token},
                                  allow_redirects=False)
        await _json_error(response, 400, "Content-Type")


async def test_a_broken_multipart_body_is_400_and_a_good_one_still_works(api: Any) -> None:
    response = await api.post("/login", data=b"--xyz\r\nnot a part", allow_redirects=False,
                              headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert response.status in (400, 403), response.status  # unreadable, or read and refused: never 500
    form = await api.get("/login")
    good = await api.post("/login", data={"name": "ada", "password": "long enough pw",
                                         "csrf": csrf_of(await form.text())}, allow_redirects=False)
    assert good.status == 303


async def test_a_form_in_an_unknown_charset_is_400(api: Any, admin_token: dict[str, str]) -> None:
    for path in ("/login", "/api/v1/account/language"):
        response = await api.post(path, data=b"language=en", headers={
            **admin_token, "Content-Type": "application/x-www-form-urlencoded; charset=no-such-charset"})
        await _json_error(response, 400, "Content-Type")


# --- ids that are not ids ------------------------------------------------------------------------------------


async def test_a_malformed_id_in_a_path_is_404_naming_it(api: Any, admin_token: dict[str, str]) -> None:
    await _json_error(await api.post("/api/v1/coaching/notifications/0/retry", headers=admin_token), 404,
                      "message_id")
    for odd in ("{3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40}", "urn:uuid:3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40",
                "3f2b8c1e5d4a4f7e9c610a8b7d6e5f40"):  # Python's UUID() reads these; the storage does not
        await _json_error(await api.post(f"/api/v1/coaching/notifications/{odd}/retry", headers=admin_token), 404)
        await _json_error(await api.get("/api/v1/coaching/new", params={"flag": odd}, headers=admin_token), 400,
                          "flag")
    await _json_error(await api.get("/api/v1/drawdowns/not-a-flag", headers=admin_token), 404, "flag_id")
    await _json_error(await api.post("/api/v1/drawdowns/x/ack", headers=admin_token, json={}), 404, "flag_id")
    await _json_error(await api.get("/api/v1/coaching/assignments/zz", headers=admin_token), 404, "assignment_id")
    await _json_error(await api.post("/api/v1/coaching/assignments/'; DROP/done", headers=admin_token, json={}),
                      404, "assignment_id")


async def test_every_declared_id_refuses_a_malformed_value(api: Any, admin_token: dict[str, str]) -> None:
    """Each route's uuid parameters, in the path or the query, with "0": a 4xx naming it, never a 500."""
    checked = 0
    for route in api.app[pages_web.API_ROUTES]:
        if "admin" not in route.roles:
            continue  # a manager's own routes (notes) refuse the admin's token first: tests/test_notes.py
        for p in route.params.path:
            if p.kind in ("uuid", "assignment_id"):
                url = route.path
                for other in route.params.path:
                    url = url.replace("{" + other.name + "}", "0" if other is p else "offer")
                response = await getattr(api, route.method)(url, headers=admin_token)
                await _json_error(response, 404, p.name)
                checked += 1
        for p in route.params.query:
            if p.kind == "uuid":
                url = route.path.replace("{step}", "offer").replace("{manager}", "m-1")
                for other in route.params.path:  # a well-formed id in the path: only the query is wrong
                    url = url.replace("{" + other.name + "}", "3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40")
                response = await getattr(api, route.method)(url, params={p.name: "x"}, headers=admin_token)
                await _json_error(response, 400, p.name)
                checked += 1
    assert checked >= 10


async def test_a_malformed_flag_to_fill_the_assign_form_is_400(api: Any, admin_token: dict[str, str]) -> None:
    await _json_error(await api.get("/api/v1/coaching/new?flag=x", headers=admin_token), 400, "flag")
    await login(api, "ada", "long enough pw")
    page = await api.get("/coaching/new?flag=x")
    assert page.status == 400 and "flag" in await page.text()


async def test_a_malformed_flag_id_in_an_assignment_is_400(api: Any, org: Any, admin_token: dict[str, str]) -> None:
    response = await api.post("/api/v1/coaching/assign", headers=admin_token, json={
        "site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
        "due": "2030-01-01", "target_minutes": 4, "within_days": 30, "flag_id": "x"})
    await _json_error(response, 400, "flag_id")


# --- empty and out-of-range values ---------------------------------------------------------------------------


async def test_an_empty_sort_status_or_page_is_the_default(api: Any, client: storage.Client,
                                                           admin_token: dict[str, str]) -> None:
    make_flag(client, "crm", manager="m-1", team="north")
    for query in ("sort=", "status=", "page=", "sort=&status=&page=&kind="):
        response = await api.get(f"/api/v1/drawdowns?{query}", headers=admin_token)
        assert response.status == 200, (query, await response.text())
        assert len((await response.json())["flags"]) == 1
    await login(api, "ada", "long enough pw")
    assert (await api.get("/drawdowns?sort=")).status == 200
    await _json_error(await api.get("/api/v1/drawdowns?sort=newest", headers=admin_token), 400, "sort")


DATE_PAGES = ["/overview", "/audit", "/managers/m-1", "/steps/offer", "/drawdowns"]


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "1969-12-31", "2150-01-01"])
async def test_a_date_the_storage_cannot_hold_is_400_naming_it(api: Any, admin_token: dict[str, str],
                                                                value: str) -> None:
    checked = 0
    for route in api.app[pages_web.API_ROUTES]:
        for p in route.params.query:
            if p.kind == "date" and route.method == "get" and "admin" in route.roles:
                url = route.path.replace("{step}", "offer").replace("{manager}", "m-1")
                await _json_error(await api.get(url, params={p.name: value}, headers=admin_token), 400, p.name)
                checked += 1
    assert checked >= 8


async def test_a_date_out_of_range_on_a_page_is_an_error_page(api: Any) -> None:
    await login(api, "ada", "long enough pw")
    for path in ("/overview?since=0001-01-01", "/audit?until=9999-12-31", "/managers/m-1?until=9999-12-31",
                 "/steps/offer?since=0001-01-01"):
        response = await api.get(path)
        assert response.status == 400, path
        assert response.content_type == "text/html" and "Jan 1, 1970" in await response.text(), path


async def test_a_date_out_of_range_in_a_body_is_400(api: Any, org: Any, admin_token: dict[str, str]) -> None:
    base = {"site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
            "target_minutes": 4, "within_days": 30}
    await _json_error(await api.post("/api/v1/coaching/assign", headers=admin_token,
                                     json={**base, "due": "9999-01-01"}), 400, "due")
    await _json_error(await api.post("/api/v1/coaching/assign", headers=admin_token,
                                     json={**base, "due": "2030-01-01", "target_minutes": 1e308}), 400,
                      "target_minutes")
    await _json_error(await api.post("/api/v1/steps/offer/bands", headers=admin_token, json={
        "min": "1m", "reference": "2m", "max": "3m", "effective_from": "0001-01-01", "reason": "r"}), 400,
                      "effective_from")


async def test_a_value_of_the_wrong_shape_in_a_body_is_400(api: Any, admin_token: dict[str, str]) -> None:
    await _json_error(await api.post("/api/v1/coaching/assign", headers=admin_token, json={"manager": {"a": 1}}),
                      400, "manager")
    await _json_error(await api.post("/api/v1/coaching/courses", headers=admin_token,
                                     json={"title": "t", "steps": [{"x": 1}]}), 400, "steps")


# --- pages with several sites --------------------------------------------------------------------------------


async def test_coaching_pages_with_several_sites(api: Any, client: storage.Client) -> None:
    sites.add_site(client, "second", ["https://two.example.com"], actor="test")
    await login(api, "ada", "long enough pw")
    for path in ("/coaching/catalog", "/coaching", "/coaching/effectiveness", "/coaching/new", "/overview",
                 "/drawdowns", "/steps", "/process"):
        response = await api.get(path)
        assert response.status == 200, (path, (await response.text())[:300])
        assert 'name="site"' in await response.text(), path


# --- headers -------------------------------------------------------------------------------------------------


async def test_every_kind_of_response_has_the_security_headers(api: Any, admin_token: dict[str, str]) -> None:
    answers = {
        "json": await api.get("/api/v1/drawdowns", headers=admin_token),
        "csv": await api.get("/api/v1/drawdowns?format=csv", headers=admin_token),
        "json error": await api.get("/api/v1/drawdowns"),
        "unknown path": await api.get("/no/such/thing"),
        "redirect": await api.get("/overview", allow_redirects=False),
        "html": await api.get("/login"),
        "collector": await api.post("/v1/events", data=b"{}", headers={"Content-Type": "application/json"}),
        "health": await api.get("/healthz"),
        "openapi": await api.get("/openapi.json"),
        "static": await api.get("/static/app.css"),
        "tracker": await api.get("/tracker.js"),
    }
    for what, response in answers.items():
        if what == "tracker" and response.status == 404:
            continue  # the built tracker is not in this tree
        assert response.headers.get("X-Content-Type-Options") == "nosniff", what
        assert "Content-Security-Policy" in response.headers, what
        assert "Strict-Transport-Security" not in response.headers, what  # plain http
    assert answers["csv"].content_type == "text/csv"
    assert "script-src 'self'" in answers["html"].headers["Content-Security-Policy"]
    assert answers["json"].headers["Content-Security-Policy"].startswith("default-src 'none'")
    if answers["tracker"].status == 200:
        assert answers["tracker"].headers["Cross-Origin-Resource-Policy"] == "cross-origin"


async def test_the_collectors_cors_headers_stay(api: Any, client: storage.Client) -> None:
    response = await api.options("/v1/events", headers={"Origin": "https://crm.example.com",
                                                         "Access-Control-Request-Method": "POST"})
    assert response.headers.get("Access-Control-Allow-Origin") == "https://crm.example.com"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
async def behind_proxy(aiohttp_client: Any, app_settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(app_settings.model_copy(update={
        "trust_forwarded_for": True, "trusted_proxies": "127.0.0.1/32,::1/128", "hsts_seconds": 600})))


async def test_hsts_over_https_only(behind_proxy: Any) -> None:
    https = await behind_proxy.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert https.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    json_https = await behind_proxy.get("/api/v1/me", headers={"X-Forwarded-Proto": "https"})
    assert json_https.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    plain = await behind_proxy.get("/login")
    assert "Strict-Transport-Security" not in plain.headers


async def test_no_hsts_when_it_is_off(aiohttp_client: Any, app_settings: Settings, org: Any) -> None:
    api = await aiohttp_client(create_app(app_settings.model_copy(update={
        "trust_forwarded_for": True, "trusted_proxies": "127.0.0.1/32,::1/128", "hsts_seconds": 0})))
    response = await api.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


async def test_no_hsts_from_a_forwarded_proto_nobody_vouches_for(aiohttp_client: Any, app_settings: Settings,
                                                                  org: Any) -> None:
    api = await aiohttp_client(create_app(app_settings.model_copy(update={"hsts_seconds": 600})))
    response = await api.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


# --- the checks themselves -----------------------------------------------------------------------------------

PARAM_CASES = [
    (pages_web.whole("n", 1, 10), "0", "n must be from 1 to 10"),
    (pages_web.Param("n", "int", minimum=1), "0", "n must be at least 1"),
    (pages_web.Param("n", "number", maximum=5), 1e308, "n must be at most 5"),
    (pages_web.whole("n", 1, 10), "1e999", "n must be a whole number"),
    (pages_web.number("n", 0, 1), "nan", "n must be a number"),
    (pages_web.number("n", 0, 1), True, "n must be a number"),
    (pages_web.text("t"), {"a": 1}, "t must be a single value"),
    (pages_web.text("t"), "x" * 1001, "t is longer than 1000 characters"),
    (pages_web.choice("c", ("a", "b")), "z", "c must be one of a, b"),
    (pages_web.day("d"), "2026-02-30", "d must be a date like 2026-11-23"),
    (pages_web.day("d"), "0001-01-01", "d must be a date from 1970-01-01 to 2149-06-06"),
    (pages_web.moment("m"), "9999-01-01T10:00", "m must be a date from 1970-01-01 to 2149-06-06"),
    (pages_web.names("l"), [["x"]], "l must be a list of names"),
    (pages_web.uuid_id("u"), "0", "u must be an id like"),
]


@pytest.mark.parametrize(("param", "value", "message"), PARAM_CASES)
def test_a_parameter_that_does_not_fit_is_refused_naming_it(param: pages_web.Param, value: Any, message: str) -> None:
    from kernel.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        param.check(value, where="query")
    assert str(refused.value).startswith(message) and refused.value.field == param.name


def test_what_fits_passes_and_a_path_id_is_not_found() -> None:
    from kernel.errors import NotFound

    for param, value in ((pages_web.whole("n", 1, 10), "3"), (pages_web.number("n", 0, 5), "2,5"),
                         (pages_web.day("d"), "2026-12-04"), (pages_web.moment("m"), "2026-12-04T10:00+01:00"),
                         (pages_web.names("l"), ["a", "b"]), (pages_web.names("l"), "a,b"),
                         (pages_web.uuid_id("u"), "3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40"), (pages_web.text("t"), ""),
                         (pages_web.day("d"), "2026-02-30")):
        param.check(value, where="body")  # a body's date that does not parse is its handler's to word
    with pytest.raises(NotFound) as missing:
        pages_web.uuid_id("flag_id").check("x", where="path")
    assert missing.value.field == "flag_id"


# --- the serve forwarding endpoint of the CLI --------------------------------------------------------------------


async def test_the_cli_forwarding_endpoint_refuses_odd_tokens_and_bodies_with_4xx(
        aiohttp_client: Any, app_settings: Settings, org: Any) -> None:
    from stepwatch.app import ADMIN_TOKEN

    app = create_app(app_settings, admin_runner=lambda argv, store: (0, " ".join(argv), ""))
    cli = await aiohttp_client(app)
    good = {"Authorization": "Bearer " + app[ADMIN_TOKEN]}
    for token in ("é", "\u0661\u0662", "x" * 500):
        response = await cli.post("/v1/admin/cli", json={"argv": ["migrate"]},
                                  headers={"Authorization": "Bearer " + token})
        await _json_error(response, 401)
    response = await cli.post("/v1/admin/cli", data=b"{not json", headers={**good, "Content-Type": "application/json"})
    await _json_error(response, 400, "argv")
    response = await cli.post("/v1/admin/cli", json={"argv": "migrate"}, headers=good)
    await _json_error(response, 400, "argv")
    response = await cli.post("/v1/admin/cli", json={"argv": ["migrate"]}, headers=good)
    assert response.status == 200 and (await response.json())["output"] == "migrate"
