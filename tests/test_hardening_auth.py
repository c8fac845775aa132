"""Access, as an attacker would try it: concurrent password guesses, a flood of logins, a single
sign-on header from the wrong peer, CSRF through single sign-on, malformed tokens, copied cookies."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher

from dashboards.auth import LoginThrottle
from kernel import audit, sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.web_helpers import SECRET, csrf_of, login, make_accounts, page_csrf


class CountingHasher(PasswordHasher):
    """Argon2id as stepwatch uses it, counting every password check (a verify, or a hash for no user)."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 (the library's name)
        self.checks += 1
        return super().verify(hash, password)

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.checks += 1
        return super().hash(password, salt=salt)


async def make_api(aiohttp_client: Any, settings: Settings, client: storage.Client, **changes: Any) -> Any:
    make_accounts(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET, **changes})))


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    return await make_api(aiohttp_client, settings, client)


def cookie_of(api: Any) -> str:
    return next(c.value for c in api.session.cookie_jar if c.key == "stepwatch_session")


# -- 1. the login throttle holds against concurrent guesses, and logins cannot starve the pages -----------


async def test_concurrent_wrong_passwords_are_checked_no_more_than_the_limit(
        api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = CountingHasher()
    monkeypatch.setattr(users, "_HASHER", hasher)
    token = csrf_of(await (await api.get("/login")).text())

    async def guess(i: int) -> int:
        response = await api.post("/login", data={"name": "dora", "password": f"guess number {i}", "csrf": token},
                                  allow_redirects=False)
        return response.status

    statuses = await asyncio.gather(*(guess(i) for i in range(30)))
    assert hasher.checks <= 5  # login_attempts_account
    assert statuses.count(401) == hasher.checks and statuses.count(429) == 30 - hasher.checks


def test_an_attempt_counts_before_its_check_and_a_right_password_gives_it_back() -> None:
    throttle = LoginThrottle(per_account=2, per_address=3, window_s=60)
    assert throttle.attempt("ann", "10.0.0.1", now=1.0) == 0
    assert throttle.attempt("ann", "10.0.0.1", now=1.0) == 0
    assert throttle.attempt("ann", "10.0.0.1", now=1.0) > 0  # the two before it are still being checked
    throttle.succeeded("ann", "10.0.0.1")
    assert throttle.attempt("bob", "10.0.0.1", now=2.0) == 0  # the address has one attempt left in its window
    assert throttle.attempt("cy", "10.0.0.1", now=2.0) == 0
    assert throttle.attempt("dee", "10.0.0.1", now=2.0) > 0


@pytest.mark.slow
async def test_a_flood_of_bad_logins_leaves_signed_in_pages_answering(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> None:
    # Throttling set out of the way: the password pool and its queue are what hold the flood back.
    api = await make_api(aiohttp_client, settings, client, login_attempts_account=10_000,
                         login_attempts_address=10_000, login_workers=2, login_queue=16)
    assert (await login(api, "max")).status == 303
    assert (await api.get("/api/v1/me")).status == 200
    flood = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                  connector=aiohttp.TCPConnector(limit=0))
    async with flood:
        token = csrf_of(await (await flood.get(api.make_url("/login"))).text())

        async def bad_login(i: int) -> tuple[int, str | None]:
            async with flood.post(api.make_url("/login"), allow_redirects=False,
                                  data={"name": f"nobody{i % 7}", "password": "not the password", "csrf": token}
                                  ) as response:
                return response.status, response.headers.get("Retry-After")

        flood_over = asyncio.Event()

        async def bad_logins() -> list[tuple[int, str | None]]:
            try:
                return await asyncio.gather(*(bad_login(i) for i in range(200)))
            finally:
                flood_over.set()

        async def signed_in_pages() -> list[float]:
            """The times of the page requests made while the flood lasts."""
            await asyncio.sleep(0.05)  # the flood has arrived
            times = []
            while not flood_over.is_set():
                started = time.perf_counter()
                response = await api.get("/api/v1/me")
                assert response.status == 200
                await response.read()
                times.append(time.perf_counter() - started)
            return times

        times, answers = await asyncio.gather(signed_in_pages(), bad_logins())
    assert len(times) >= 5, f"the pages answered {len(times)} times during the flood: {times}"
    p95 = sorted(times)[math.ceil(len(times) * 0.95) - 1]
    assert p95 < 1.0, f"signed-in p95 {p95:.2f} s during the flood: {sorted(times)}"
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {401, 429} and statuses.count(401) >= 2
    assert all(retry for status, retry in answers if status == 429)  # told when to come back


# -- 2. single sign-on: believed only from a trusted proxy; CSRF whatever signed the user in --------------


@pytest.mark.parametrize(("proxies", "signed_in"), [
    ("", False),  # no trusted proxy: the header is believed from no one
    ("10.0.0.0/8, 192.168.1.7", False),  # the test client (127.0.0.1) is not one of them
    ("10.0.0.0/8, 127.0.0.1", True),
    ("127.0.0.0/8", True),
])
async def test_single_sign_on_header_is_believed_only_from_a_trusted_proxy(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site,
        proxies: str, signed_in: bool) -> None:
    api = await make_api(aiohttp_client, settings, client, sso_header="X-Remote-User", trusted_proxies=proxies)
    response = await api.get("/api/v1/audit", headers={"X-Remote-User": "ada"})
    assert response.status == (200 if signed_in else 401)


async def test_single_sign_on_posts_need_the_csrf_token_of_their_pages(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> None:
    api = await make_api(aiohttp_client, settings, client, sso_header="X-Remote-User", trusted_proxies="127.0.0.1")
    sso = {"X-Remote-User": "ada"}
    # A page of another site submitting a form: the proxy adds the header, but there is no token.
    refused = await api.post("/account/language", data={"language": "ru"}, headers=sso, allow_redirects=False)
    assert refused.status == 403
    refused = await api.post("/api/v1/account/language", json={"language": "ru"}, headers=sso)
    assert refused.status == 403
    assert users.get_user(client, "ada").language == "en"
    token = csrf_of(await (await api.get("/audit", headers=sso)).text())
    assert token == csrf_of(await (await api.get("/overview", headers=sso)).text())  # stable across requests
    ok = await api.post("/account/language", data={"language": "ru", "csrf": token}, headers=sso,
                        allow_redirects=False)
    assert ok.status == 303
    ok = await api.post("/api/v1/account/language", json={"language": "en"}, headers={**sso, "X-CSRF-Token": token})
    assert ok.status == 200 and users.get_user(client, "ada").language == "en"
    # Another user's token does not fit.
    assert token != csrf_of(await (await api.get("/audit", headers={"X-Remote-User": "dora"})).text())


async def test_bearer_token_posts_need_no_csrf_token(api: Any, client: storage.Client) -> None:
    token = users.create_token(client, "ada", "script", actor="test")
    ok = await api.post("/api/v1/account/language", json={"language": "ru"},
                        headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200 and users.get_user(client, "ada").language == "ru"


# -- 3. malformed credentials: 401 or 403, never 5xx ---------------------------------------------------


async def raw_request(api: Any, method: str, path: str, header: bytes, cookie: str = "") -> int:
    """A request with one header line sent as raw bytes (as curl sends them: not necessarily UTF-8)."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    extra = f"Cookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n" if cookie else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}".encode() + header
                 + b"\r\n\r\n" + (b"{}" if cookie else b""))
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize("header", [
    "Bearer é".encode("latin-1"),  # a byte that is not UTF-8
    "Bearer é".encode(),
    "Bearer swt_é".encode("latin-1"),
    b"Bearer ",
    b"Bearer swt_" + b"a" * 5000,
    b"Bearer swt_abc def",
    b"Bearer swt_\x80\xff",
])
async def test_malformed_bearer_tokens_get_401(api: Any, header: bytes) -> None:
    assert await raw_request(api, "GET", "/api/v1/audit", b"Authorization: " + header) == 401


async def test_a_non_ascii_csrf_token_is_refused_not_an_error(api: Any) -> None:
    await login(api, "ada")
    response = await api.post("/api/v1/account/language", json={"language": "ru"}, headers={"X-CSRF-Token": "é"})
    assert response.status == 403
    response = await api.post("/account/language", data={"language": "ru", "csrf": "é"}, allow_redirects=False)
    assert response.status == 403
    cookie = "stepwatch_session=" + cookie_of(api)
    for header in (b"X-CSRF-Token: \xe9", b"X-CSRF-Token: \xed\xa0\x80"):  # not UTF-8; a lone surrogate
        assert await raw_request(api, "POST", "/api/v1/account/language", header, cookie=cookie) == 403


async def test_a_non_ascii_login_form_token_is_refused_not_an_error(api: Any) -> None:
    await api.get("/login")
    response = await api.post("/login", data={"name": "dora", "password": "x" * 12, "csrf": "é"},
                              allow_redirects=False)
    assert response.status == 403


# -- 4. sessions end on the server ------------------------------------------------------------------


async def test_a_copied_cookie_stops_working_after_logout(api: Any, aiohttp_client: Any) -> None:
    await login(api, "dora")
    copied = cookie_of(api)
    assert (await api.get("/api/v1/audit")).status == 200
    await api.post("/logout", data={"csrf": await page_csrf(api)}, allow_redirects=False)
    api.session.cookie_jar.update_cookies({"stepwatch_session": copied})  # the copy, sent again
    assert (await api.get("/api/v1/audit")).status == 401
    assert (await api.get("/audit", allow_redirects=False)).status == 303


async def test_logout_ends_only_that_login(api: Any, aiohttp_client: Any) -> None:
    await login(api, "dora")
    first = cookie_of(api)
    api.session.cookie_jar.clear()
    await login(api, "dora")
    await api.post("/logout", data={"csrf": await page_csrf(api)}, allow_redirects=False)
    api.session.cookie_jar.update_cookies({"stepwatch_session": first})
    assert (await api.get("/api/v1/audit")).status == 200  # another browser stays signed in


async def test_a_session_ended_elsewhere_ends_here_within_seconds(api: Any, client: storage.Client,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (behind the load balancer) signs the session out: this one sees it on its next check."""
    await login(api, "dora")
    assert (await api.get("/api/v1/audit")).status == 200
    session_id = storage.query_rows(client, "SELECT id FROM sessions FINAL WHERE user = 'dora'")[0]["id"]
    client.command("INSERT INTO sessions SELECT id, user, started_at, true, {v:UInt64} FROM sessions FINAL "
                   "WHERE id = {id:String}", parameters={"id": session_id, "v": time.time_ns()})
    monkeypatch.setattr(users, "SESSION_RECHECK_S", 0.0)  # as if the seconds it is remembered had passed
    assert (await api.get("/api/v1/audit")).status == 401


async def test_disabling_a_user_ends_their_logins_and_tokens_at_once(api: Any, client: storage.Client) -> None:
    token = users.create_token(client, "dora", "script", actor="test")
    await login(api, "dora")
    assert (await api.get("/api/v1/audit")).status == 200
    assert (await api.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})).status == 200
    copied = cookie_of(api)
    assert users.disable_user(client, "dora", actor="cli:root", reason="left the company") == (1, 1)
    assert (await api.get("/api/v1/audit")).status == 401
    assert (await api.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})).status == 401
    assert (await login(api, "dora")).status == 401
    entry = audit.entries(client, action="user.disable")[0]
    assert (entry.actor, entry.object, entry.reason) == ("cli:root", "dora", "left the company")
    assert entry.details == {"sessions_ended": 1, "tokens_revoked": ["script"]}
    # Enabled again: a new login works; the old login and the old token stay ended.
    users.enable_user(client, "dora", actor="cli:root")
    api.session.cookie_jar.clear()
    api.session.cookie_jar.update_cookies({"stepwatch_session": copied})
    assert (await api.get("/api/v1/audit")).status == 401
    assert (await api.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})).status == 401
    assert (await login(api, "dora")).status == 303
    assert (await api.get("/api/v1/audit")).status == 200
    assert [e.action for e in audit.entries(client, obj="dora", action="user.")][:2] == ["user.enable",
                                                                                        "user.disable"]


async def test_a_token_records_its_last_use_once_a_minute(api: Any, client: storage.Client) -> None:
    token = users.create_token(client, "ada", "nightly export", actor="test")
    assert users.list_tokens(client, "ada")[0].last_used_at is None
    for _ in range(3):
        assert (await api.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})).status == 200
    listed = users.list_tokens(client, "ada")[0]
    assert listed.last_used_at is not None
    assert storage.query_rows(client, "SELECT count() AS n FROM api_token_uses")[0]["n"] == 1


async def test_a_revoked_token_stops_working(api: Any, client: storage.Client) -> None:
    token = users.create_token(client, "ada", "nightly export", actor="test")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.get("/api/v1/audit", headers=headers)).status == 200
    users.revoke_token(client, "nightly export", actor="test")
    assert (await api.get("/api/v1/audit", headers=headers)).status == 401
    assert (await login(api, "ada")).status == 303  # the account itself is untouched
