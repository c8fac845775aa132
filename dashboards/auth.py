"""Who is asking: login cookies, API tokens, single sign-on, CSRF tokens and login throttling.

A login is a signed cookie (itsdangerous, HMAC-SHA1 over a timestamped JSON payload) holding the
user name, a fingerprint of what the login depends on (password hash, role, teams, manager id), the
id of its server-side session and its CSRF token. Changing any of those, signing out or disabling
the account ends the login. Scripts send `Authorization: Bearer swt_...` (the same scoping as the
account the token belongs to). A reverse proxy in STEPWATCH_TRUSTED_PROXIES may name the user in
STEPWATCH_SSO_HEADER; from any other peer the header is ignored.

Every state-changing browser request carries a CSRF token, whatever signed the user in: a cookie
login's is random and in its cookie; a single sign-on user's is an HMAC of their name and login
fingerprint, so it is the same on every request the proxy signs. Only Bearer-token calls carry no
ambient credential and need none.

Passwords are checked (Argon2id, ~0.1 s of CPU) in a pool of their own (STEPWATCH_LOGIN_WORKERS
threads, at most STEPWATCH_LOGIN_QUEUE more waiting; beyond that a login gets 429 at once), never in
the storage threads, so a flood of logins cannot slow the pages of people signed in. An attempt is
counted before its password is checked: concurrent guesses cannot outrun the throttle.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from collector.views import client_address
from kernel import app_keys, users
from kernel.errors import NotFound
from kernel.settings import Settings
from kernel.users import User

SESSION_COOKIE = "stepwatch_session"
LOGIN_COOKIE = "stepwatch_login"  # the CSRF token of the login form, before there is a session
THROTTLE_WINDOW_S = 15 * 60
BUSY_RETRY_S = 5  # Retry-After when every password worker and queue place is taken


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of one request."""

    user: User
    csrf: str  # what a state-changing request must echo; empty for a Bearer token (nothing ambient to forge)
    via: str  # "cookie", "token" or "sso"
    session: str = ""  # a cookie login's server-side session id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role


class Sessions:
    """Issues and reads the login cookie."""

    def __init__(self, secret: str, hours: float):
        self._sso_key = hashlib.sha256(b"stepwatch.sso-csrf\x00" + secret.encode()).digest()
        self._serializer = URLSafeTimedSerializer(secret, salt="stepwatch.session")
        self._login = URLSafeTimedSerializer(secret, salt="stepwatch.login-form")
        self.max_age = int(hours * 3600)

    def issue(self, user: User, session_id: str) -> tuple[str, str]:
        """(cookie value, CSRF token) for a fresh login whose server-side session is `session_id`."""
        csrf = secrets.token_urlsafe(24)
        return self._serializer.dumps({"u": user.name, "v": fingerprint(user), "c": csrf, "s": session_id}), csrf

    def read(self, value: str) -> dict | None:
        try:
            payload = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # also an expired signature
            return None
        return payload if isinstance(payload, dict) and {"u", "v", "c", "s"} <= payload.keys() else None

    def sso_csrf(self, user: User) -> str:
        """A single sign-on user's CSRF token: stable across the proxy's requests, unknown to other sites."""
        material = f"{user.name}\x00{fingerprint(user)}".encode()
        return hmac.new(self._sso_key, material, hashlib.sha256).hexdigest()[:32]

    def login_form_token(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(24)
        return self._login.dumps(token), token

    def login_form_ok(self, cookie: str | None, supplied: str) -> bool:
        if not cookie or not supplied:
            return False
        try:
            token = self._login.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return isinstance(token, str) and same_secret(token, supplied)


def fingerprint(user: User) -> str:
    """What a login depends on: changing any of it (password, role, teams, manager id) ends the login."""
    material = "\x00".join([user.password_hash, user.role, ",".join(user.teams), user.manager_id])
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def secret_key(settings: Settings) -> str:
    """STEPWATCH_SECRET_KEY, or a random key made once and kept beside the data (mode 0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key)
        return key


class LoginThrottle:
    """Failed logins per account and per address in a sliding 15-minute window.

    Kept in the process: behind a load balancer each instance counts on its own, so an attacker
    gets at most the limit times the number of instances; the Argon2id cost bounds the rest.
    """

    def __init__(self, per_account: int, per_address: int, window_s: float = THROTTLE_WINDOW_S):
        self.per_account, self.per_address, self.window_s = per_account, per_address, window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, name: str, address: str, now: float | None = None) -> int:
        """Seconds to wait before another attempt is allowed; 0 = go ahead."""
        now = time.monotonic() if now is None else now
        waits = [self._wait(f"a:{name.lower()}", self.per_account, now),
                 self._wait(f"r:{address}", self.per_address, now)]
        return max(waits)

    def attempt(self, name: str, address: str, now: float | None = None) -> int:
        """Count an attempt now, before its password is checked; 0 = go ahead, else the seconds to wait.

        Counting first is what stops concurrent guesses: each is counted the moment it arrives, so
        the limit's worth go through while the rest wait. A right password clears it (`succeeded`).
        """
        now = time.monotonic() if now is None else now
        wait = self.retry_after(name, address, now)
        if not wait:
            self.failed(name, address, now)
        return wait

    def withdraw(self, name: str, address: str) -> None:
        """Forget the latest attempt counted for this account and address (its password was not checked)."""
        for key in (f"a:{name.lower()}", f"r:{address}"):
            times = self._failures.get(key)
            if times:
                times.pop()

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in (f"a:{name.lower()}", f"r:{address}"):
            self._failures[key].append(now)
        if len(self._failures) > 100_000:  # a flood of made-up names: forget the oldest keys
            for key in list(self._failures)[:50_000]:
                del self._failures[key]

    def succeeded(self, name: str, address: str | None = None) -> None:
        """A right password: the account's failures are forgotten, and so is this attempt of the address."""
        if address is not None:
            self.withdraw(name, address)
        self._failures.pop(f"a:{name.lower()}", None)

    def _wait(self, key: str, limit: int, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < limit:
            return 0
        return max(1, int(times[-limit] + self.window_s - now) + 1)


class LoginsBusy(Exception):
    """Every password worker is busy and the queue is full: answer 429 at once."""


class PasswordChecks:
    """Argon2id checks in a small pool of their own, with a bounded queue in front of it."""

    def __init__(self, workers: int, queue: int):
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="login")
        self.capacity = workers + queue
        self._pending = 0
        self._lock = threading.Lock()

    async def check(self, request: web.Request, name: str, password: str) -> User | None:
        """The active user whose password this is, or None; LoginsBusy when no place is free.

        A place is held from before the account is read until the check ends, so a flood of logins
        reaches the storage threads at most `capacity` at a time.
        """
        with self._lock:
            if self._pending >= self.capacity:
                raise LoginsBusy()
            self._pending += 1
        try:
            user = await request.app[app_keys.STORE].run(users.find_user, name)
            checked = self._executor.submit(users.verify_password, user, password)
            return user if await asyncio.wrap_future(checked) else None
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def close_password_checks(app: web.Application) -> None:
    app[PASSWORDS].close()


SESSIONS = web.AppKey("sessions", Sessions)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
PASSWORDS = web.AppKey("password_checks", PasswordChecks)
_VIEWER = web.RequestKey("viewer", object)  # Viewer | None, once looked up


async def viewer(request: web.Request) -> Viewer | None:
    """The signed-in user of this request, or None; read once per request."""
    if _VIEWER in request:
        return request[_VIEWER]  # type: ignore[return-value]
    request[_VIEWER] = found = await _identify(request)
    return found


async def _identify(request: web.Request) -> Viewer | None:
    app, store = request.app, request.app[app_keys.STORE]
    settings = app[app_keys.SETTINGS]
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        token = authorization.removeprefix("Bearer ").strip()
        if not users.token_shaped(token):  # not ASCII, or not a token at all: no lookup
            return None
        user = await store.run(users.user_for_token, token)
        return Viewer(user, "", "token") if user else None
    if settings.sso_header and request.headers.get(settings.sso_header) and peer_trusted(request, settings):
        user = await _active_user(request, request.headers[settings.sso_header].strip())
        return Viewer(user, app[SESSIONS].sso_csrf(user), "sso") if user else None
    cookie = request.cookies.get(SESSION_COOKIE)
    payload = app[SESSIONS].read(cookie) if cookie else None
    if payload is None:
        return None
    user = await store.run(users.session_user, str(payload["u"]), str(payload["s"]))
    if user is None or fingerprint(user) != payload["v"]:
        return None  # signed out, disabled, or the password, role or scope changed since this login
    return Viewer(user, str(payload["c"]), "cookie", str(payload["s"]))


def peer_trusted(request: web.Request, settings: Settings) -> bool:
    """Whether the direct peer is one of STEPWATCH_TRUSTED_PROXIES (none when it is empty)."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:  # no address, or a Unix socket
        return False
    return any(peer in network for network in settings.trusted_networks)


async def _active_user(request: web.Request, name: str) -> User | None:
    try:
        user = await request.app[app_keys.STORE].run(users.get_user, name)
    except NotFound:
        return None
    return None if user.disabled else user


def csrf_ok(request: web.Request, who: Viewer, supplied: str | None) -> bool:
    """A browser (cookie or single sign-on) must echo its CSRF token; only a Bearer token needs none."""
    if who.via == "token":
        return True
    return bool(supplied) and bool(who.csrf) and same_secret(who.csrf, supplied or "")


def same_secret(expected: str, supplied: str) -> bool:
    """A constant-time comparison that takes any text: compare_digest refuses non-ASCII strings, and a
    header can hold bytes that are not even UTF-8. Our secrets are ASCII, so nothing replaced can match."""
    return hmac.compare_digest(expected.encode(), supplied.encode("utf-8", "replace"))


def address(request: web.Request) -> str:
    return client_address(request, request.app[app_keys.SETTINGS])


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=request.app[SESSIONS].max_age, httponly=True,
                        samesite="Lax", secure=is_https(request), path="/")


def is_https(request: web.Request) -> bool:
    if request.secure:
        return True
    settings = request.app[app_keys.SETTINGS]
    return settings.trust_forwarded_for and request.headers.get("X-Forwarded-Proto", "") == "https"
