"""Who is asking: login cookies, API tokens, single sign-on, CSRF tokens and login throttling.

A login is a signed cookie (itsdangerous, HMAC-SHA1 over a timestamped JSON payload) holding the
user name, a fingerprint of what the login depends on (password hash, role, teams, manager id) and
the CSRF token of the session. Changing any of those, or disabling the account, ends its logins.
Scripts send `Authorization: Bearer swt_...` (the same scoping as the account the token belongs to);
a trusted reverse proxy may name the user in `STEPWATCH_SSO_HEADER`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from collector import keys
from collector.views import client_address
from stepwatch import users
from stepwatch.errors import NotFound
from stepwatch.settings import Settings
from stepwatch.users import User

SESSION_COOKIE = "stepwatch_session"
LOGIN_COOKIE = "stepwatch_login"  # the CSRF token of the login form, before there is a session
THROTTLE_WINDOW_S = 15 * 60


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of one request."""

    user: User
    csrf: str  # empty for token and SSO requests: they carry no ambient cookie to forge
    via: str  # "cookie", "token" or "sso"

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role


class Sessions:
    """Issues and reads the login cookie."""

    def __init__(self, secret: str, hours: float):
        self._serializer = URLSafeTimedSerializer(secret, salt="stepwatch.session")
        self._login = URLSafeTimedSerializer(secret, salt="stepwatch.login-form")
        self.max_age = int(hours * 3600)

    def issue(self, user: User) -> tuple[str, str]:
        """(cookie value, CSRF token) for a fresh login."""
        csrf = secrets.token_urlsafe(24)
        return self._serializer.dumps({"u": user.name, "v": fingerprint(user), "c": csrf}), csrf

    def read(self, value: str) -> dict | None:
        try:
            payload = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # also an expired signature
            return None
        return payload if isinstance(payload, dict) and {"u", "v", "c"} <= payload.keys() else None

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
        return isinstance(token, str) and hmac.compare_digest(token, supplied)


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

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in (f"a:{name.lower()}", f"r:{address}"):
            self._failures[key].append(now)
        if len(self._failures) > 100_000:  # a flood of made-up names: forget the oldest keys
            for key in list(self._failures)[:50_000]:
                del self._failures[key]

    def succeeded(self, name: str) -> None:
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


SESSIONS = web.AppKey("sessions", Sessions)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
_VIEWER = web.RequestKey("viewer", object)  # Viewer | None, once looked up


async def viewer(request: web.Request) -> Viewer | None:
    """The signed-in user of this request, or None; read once per request."""
    if _VIEWER in request:
        return request[_VIEWER]  # type: ignore[return-value]
    request[_VIEWER] = found = await _identify(request)
    return found


async def _identify(request: web.Request) -> Viewer | None:
    app, store = request.app, request.app[keys.STORE]
    settings = app[keys.SETTINGS]
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        token = authorization.removeprefix("Bearer ").strip()
        user = await store.run(users.user_for_token, token)
        return Viewer(user, "", "token") if user else None
    if settings.sso_header and request.headers.get(settings.sso_header):
        user = await _active_user(request, request.headers[settings.sso_header].strip())
        return Viewer(user, "", "sso") if user else None
    cookie = request.cookies.get(SESSION_COOKIE)
    payload = app[SESSIONS].read(cookie) if cookie else None
    if payload is None:
        return None
    user = await _active_user(request, str(payload["u"]))
    if user is None or fingerprint(user) != payload["v"]:
        return None  # the password, role or scope changed since this login
    return Viewer(user, str(payload["c"]), "cookie")


async def _active_user(request: web.Request, name: str) -> User | None:
    try:
        user = await request.app[keys.STORE].run(users.get_user, name)
    except NotFound:
        return None
    return None if user.disabled else user


def csrf_ok(request: web.Request, who: Viewer, supplied: str | None) -> bool:
    """A cookie login must echo its CSRF token; tokens and SSO carry no ambient credential."""
    if who.via != "cookie":
        return True
    return bool(supplied) and hmac.compare_digest(who.csrf, supplied or "")


def address(request: web.Request) -> str:
    return client_address(request, request.app[keys.SETTINGS])


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=request.app[SESSIONS].max_age, httponly=True,
                        samesite="Lax", secure=is_https(request), path="/")


def is_https(request: web.Request) -> bool:
    if request.secure:
        return True
    settings = request.app[keys.SETTINGS]
    return settings.trust_forwarded_for and request.headers.get("X-Forwarded-Proto", "") == "https"
