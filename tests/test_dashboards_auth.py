"""Signing in: Argon2id passwords through the form, throttling, cookies, CSRF, tokens, SSO, logout."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards.auth import LoginThrottle
from kernel import sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.web_helpers import PASSWORD, SECRET, csrf_of, login, make_accounts, page_csrf


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


async def test_anonymous_pages_redirect_to_login_and_api_answers_401(api: Any) -> None:
    page = await api.get("/audit?actor=x", allow_redirects=False)
    assert page.status == 303
    location = page.headers["Location"]
    assert location.startswith("/login?next=")
    form = await (await api.get(location)).text()
    assert 'name="next" value="/audit?actor=x"' in form
    twin = await api.get("/api/v1/audit")
    assert twin.status == 401 and "error" in await twin.json()


async def test_login_sets_a_hardened_cookie_and_lands_on_the_role_home(api: Any) -> None:
    response = await login(api, "dora")
    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "stepwatch_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; https is tested below
    home = await api.get("/", allow_redirects=False)
    assert home.headers["Location"] == "/overview"


async def test_secure_cookie_behind_an_https_proxy(aiohttp_client: Any, settings: Settings,
                                                   client: storage.Client, site: sites.Site) -> None:
    make_accounts(client)
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                      "trust_forwarded_for": True})))
    form = await api.get("/login")
    response = await api.post("/login", data={"name": "dora", "password": PASSWORD, "csrf": csrf_of(await form.text())},
                              headers={"X-Forwarded-Proto": "https"}, allow_redirects=False)
    assert "Secure" in response.headers["Set-Cookie"]


async def test_wrong_password_and_unknown_name_look_the_same(api: Any) -> None:
    wrong = await login(api, "dora", "not the password")
    unknown = await login(api, "nobody", "not the password")
    assert wrong.status == unknown.status == 401
    assert "Wrong user name or password" in await wrong.text()
    assert "Wrong user name or password" in await unknown.text()


async def test_login_is_throttled_per_account(api: Any) -> None:
    for _ in range(5):
        assert (await login(api, "dora", "wrong password!")).status == 401
    blocked = await login(api, "dora")  # even the right password waits now
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
    assert (await login(api, "max")).status == 303  # another account is not affected


def test_throttle_per_address_and_window() -> None:
    throttle = LoginThrottle(per_account=3, per_address=5, window_s=60)
    for i in range(5):
        throttle.failed(f"user{i}", "10.0.0.1", now=100.0)
    assert throttle.retry_after("someone-else", "10.0.0.1", now=101.0) > 0
    assert throttle.retry_after("someone-else", "10.0.0.2", now=101.0) == 0
    assert throttle.retry_after("someone-else", "10.0.0.1", now=161.0) == 0  # the window slid past


async def test_login_form_needs_its_csrf_token(api: Any) -> None:
    await api.get("/login")
    response = await api.post("/login", data={"name": "dora", "password": PASSWORD, "csrf": "forged"},
                              allow_redirects=False)
    assert response.status == 403


async def test_next_never_leaves_the_site(api: Any) -> None:
    response = await login(api, "dora", next_path="https://evil.example/")
    assert response.headers["Location"] == "/"
    api.session.cookie_jar.clear()
    response = await login(api, "max", next_path="//evil.example/x")
    assert response.headers["Location"] == "/"


async def test_form_post_without_csrf_is_refused(api: Any) -> None:
    await login(api, "ada")
    response = await api.post("/account/language", data={"language": "ru"}, allow_redirects=False)
    assert response.status == 403
    token = await page_csrf(api, "/audit")
    response = await api.post("/account/language", data={"language": "ru", "csrf": token}, allow_redirects=False)
    assert response.status == 303


async def test_api_post_with_cookie_needs_the_csrf_header(api: Any, client: storage.Client) -> None:
    await login(api, "ada")
    refused = await api.post("/api/v1/account/language", json={"language": "ru"})
    assert refused.status == 403
    token = await page_csrf(api, "/audit")
    ok = await api.post("/api/v1/account/language", json={"language": "ru"}, headers={"X-CSRF-Token": token})
    assert ok.status == 200 and (await ok.json())["language"] == "ru"
    assert users.get_user(client, "ada").language == "ru"


async def test_language_is_per_user_and_changes_every_word(api: Any) -> None:
    await login(api, "ada")
    english = await (await api.get("/audit")).text()
    assert "Audit log" in english and 'lang="en"' in english
    token = csrf_of(english)
    await api.post("/account/language", data={"language": "ru", "csrf": token})
    russian = await (await api.get("/audit")).text()
    assert "Журнал изменений" in russian and 'lang="ru"' in russian


async def test_password_change_ends_existing_logins(api: Any, client: storage.Client) -> None:
    await login(api, "dora")
    assert (await api.get("/audit", allow_redirects=False)).status == 200
    users.set_password(client, "dora", "another long password", actor="test")
    assert (await api.get("/audit", allow_redirects=False)).status == 303


async def test_logout_ends_the_session(api: Any) -> None:
    await login(api, "dora")
    token = await page_csrf(api)
    response = await api.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303 and 'stepwatch_session=""' in response.headers["Set-Cookie"]
    assert (await api.get("/audit", allow_redirects=False)).status == 303


async def test_forged_or_tampered_cookie_is_ignored(api: Any) -> None:
    api.session.cookie_jar.update_cookies({"stepwatch_session": "eyJ1IjoiYWRhIn0.forged.signature"})
    assert (await api.get("/audit", allow_redirects=False)).status == 303


async def test_api_token_has_the_same_scope_as_its_account(api: Any, client: storage.Client) -> None:
    admin_token = users.create_token(client, "ada", "script", actor="test")
    manager_token = users.create_token(client, "max", "script", actor="test")
    ok = await api.get("/api/v1/audit", headers={"Authorization": f"Bearer {admin_token}"})
    assert ok.status == 200 and "entries" in await ok.json()
    refused = await api.get("/api/v1/audit", headers={"Authorization": f"Bearer {manager_token}"})
    assert refused.status == 403 and "manager" in (await refused.json())["error"]
    bad = await api.get("/api/v1/audit", headers={"Authorization": "Bearer swt_not-a-token"})
    assert bad.status == 401


async def test_single_sign_on_header_only_when_configured(aiohttp_client: Any, settings: Settings,
                                                           client: storage.Client, site: sites.Site) -> None:
    make_accounts(client)
    plain = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))
    assert (await plain.get("/api/v1/audit", headers={"X-Remote-User": "ada"})).status == 401
    sso = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                      "sso_header": "X-Remote-User",
                                                                      "trusted_proxies": "127.0.0.1"})))
    assert (await sso.get("/api/v1/audit", headers={"X-Remote-User": "ada"})).status == 200
    assert (await sso.get("/api/v1/audit", headers={"X-Remote-User": "ghost"})).status == 401


async def test_pages_send_security_headers(api: Any) -> None:
    await login(api, "ada")
    response = await api.get("/audit")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_the_audit_log_refuses_a_bad_date_naming_the_field(api: Any) -> None:
    await login(api, "ada")
    bad = await api.get("/api/v1/audit?until=someday")
    assert bad.status == 400 and (await bad.json())["field"] == "until"
    assert (await api.get("/api/v1/audit?since=2026-11-01&until=2026-11-23")).status == 200
