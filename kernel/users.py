"""Accounts: who may see and change what, with passwords hashed by Argon2id and API tokens.

Roles: `admin` (everything), `director` (the teams they lead), `trainer` (also mentors: what is
assigned to them), `manager` (their own figures, through the manager id the tracker reports).
Every change to an account is audited; passwords and tokens never appear in the audit log.

A login is a server-side session (`sessions`): signing out or disabling the account ends it, and a
copied cookie stops working. A session's state is remembered by this process for a few seconds
(SESSION_RECHECK_S) so pages need no query for it; whatever ends a session in this process forgets
it at once, and another process sees the end within those seconds. A token records when it was last
used, at most once a minute (TOKEN_USE_EVERY_S), so API calls do not each write.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from clickhouse_connect.driver.client import Client

from kernel import audit, small_tables
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.storage import query_rows

ROLES = ("admin", "director", "trainer", "manager")
LANGUAGES = ("en", "ru")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # Argon2id with the library's current recommended parameters
_TOKEN = re.compile(r"^swt_[A-Za-z0-9_\-]{20,100}$")
TOKEN_ID_CHARS = 12  # a token's id: the start of its hash, enough to name it, useless to guess it
SESSION_RECHECK_S = 5.0
TOKEN_USE_EVERY_S = 60.0


@dataclass(frozen=True)
class User:
    name: str
    role: str
    teams: tuple[str, ...]
    manager_id: str
    password_hash: str
    language: str
    disabled: bool
    version: int
    email: str = ""  # where the weekly digest is e-mailed; "" = no e-mail


@small_tables.remembered("users")
def list_users(client: Client) -> list[User]:
    rows = query_rows(client, "SELECT name, role, teams, manager_id, password_hash, language, disabled, version, "
                              "email FROM users FINAL ORDER BY name")
    return [User(**{**row, "teams": tuple(row["teams"])}) for row in rows]


def get_user(client: Client, name: str) -> User:
    for user in list_users(client):
        if user.name == name:
            return user
    raise NotFound(f"no user named {name!r}")


def add_user(client: Client, name: str, role: str, password: str, *, teams: tuple[str, ...] = (),
             manager_id: str = "", language: str = "en", email: str = "", actor: str, reason: str = "") -> User:
    if not _NAME.match(name):
        raise InvalidInput("a user name is 1-64 letters, digits, _ . @ -, starting with a letter or digit")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if role == "manager" and not manager_id:
        raise InvalidInput("a manager account needs --manager-id: the id the tracker reports for them")
    if language not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}")
    if any(u.name == name for u in list_users(client)):
        raise Conflict(f"a user named {name!r} exists already")
    user = User(name, role, tuple(teams), manager_id, hash_password(password), language, False, time.time_ns(),
                check_email(email))
    _write(client, user)
    audit.record(client, actor, "user.add", name, reason,
                 {"role": role, "teams": list(teams), "manager_id": manager_id, "email": user.email})
    return user


def set_password(client: Client, name: str, password: str, *, actor: str, reason: str = "") -> None:
    user = get_user(client, name)
    _write(client, replace(user, password_hash=hash_password(password), version=time.time_ns()))
    audit.record(client, actor, "user.passwd", name, reason)


def set_language(client: Client, name: str, language: str, *, actor: str) -> None:
    if language not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}")
    user = get_user(client, name)
    _write(client, replace(user, language=language, version=time.time_ns()))
    audit.record(client, actor, "user.language", name, "", {"language": language})


def set_email(client: Client, name: str, email: str, *, actor: str, reason: str = "") -> User:
    """Set (or, with "", clear) the address an account's weekly digest is e-mailed to."""
    user = replace(get_user(client, name), email=check_email(email), version=time.time_ns())
    _write(client, user)
    audit.record(client, actor, "user.email", name, reason, {"email": user.email})
    return user


def check_email(email: str) -> str:
    email = email.strip()
    if email and (len(email) > 254 or not _EMAIL.match(email)):
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    return email


def find_user(client: Client, name: str) -> User | None:
    try:
        return get_user(client, name)
    except NotFound:
        return None


def verify_password(user: User | None, password: str) -> bool:
    """Whether the password is the active user's; the same Argon2id cost whether or not there is a user.

    Needs no storage: the dashboards run it in a pool of its own, apart from the storage threads.
    """
    if user is None:
        _HASHER.hash(password)  # spend the same time: no hint whether the name exists
        return False
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    return not user.disabled


def check_password(client: Client, name: str, password: str) -> User | None:
    """The user if the password is theirs and the account is active; None otherwise (same cost)."""
    user = find_user(client, name)
    return user if verify_password(user, password) else None


def disable_user(client: Client, name: str, *, actor: str, reason: str = "") -> tuple[int, int]:
    """Refuse the account's logins and end its sessions and tokens: (sessions ended, tokens revoked).

    Enabling it again lets it sign in; its tokens stay revoked and its old logins stay ended.
    """
    user = get_user(client, name)
    if not user.disabled:
        _write(client, replace(user, disabled=True, version=time.time_ns()))
    ended = end_sessions(client, name)
    revoked = [t for t in list_tokens(client, name) if not t.revoked]
    _revoke(client, revoked)
    audit.record(client, actor, "user.disable", name, reason,
                 {"sessions_ended": ended, "tokens_revoked": [t.name for t in revoked]})
    return ended, len(revoked)


def enable_user(client: Client, name: str, *, actor: str, reason: str = "") -> None:
    user = get_user(client, name)
    if user.disabled:
        _write(client, replace(user, disabled=False, version=time.time_ns()))
    audit.record(client, actor, "user.enable", name, reason)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def new_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class ApiToken:
    """An API token as listed: never the token itself, nor its whole hash."""

    id: str
    name: str
    user: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    token_hash: str


def create_token(client: Client, user: str, name: str, *, actor: str) -> str:
    """A new API token for a user; returns it (shown once: only its hash is stored)."""
    get_user(client, user)
    token = "swt_" + secrets.token_urlsafe(32)
    client.insert("api_tokens", [[_token_hash(token), name, user, datetime.now(UTC), False, time.time_ns()]],
                  column_names=["token_hash", "name", "user", "created_at", "revoked", "version"])
    audit.record(client, actor, "token.add", user, "", {"name": name})
    return token


def token_shaped(token: str) -> bool:
    """Whether a string can be a token at all (`swt_` and URL-safe characters): anything else is refused
    before it is hashed or looked up."""
    return bool(_TOKEN.match(token))


def user_for_token(client: Client, token: str) -> User | None:
    if not token_shaped(token):
        return None
    token_hash = _token_hash(token)
    rows = query_rows(client, "SELECT user, revoked FROM api_tokens FINAL WHERE token_hash = {h:String}",
                      {"h": token_hash})
    if not rows or rows[0]["revoked"]:
        return None
    user = find_user(client, rows[0]["user"])
    if user is None or user.disabled:
        return None
    _note_use(client, token_hash)
    return user


def list_tokens(client: Client, user: str | None = None) -> list[ApiToken]:
    """Every token (of one user, if given), revoked ones too, oldest first, with its last use."""
    rows = query_rows(client, "SELECT token_hash, name, user, created_at, revoked FROM api_tokens FINAL "
                              "WHERE {user:String} = '' OR user = {user:String} ORDER BY created_at, token_hash",
                      {"user": user or ""})
    uses = {row["token_hash"]: row["used_at"] for row in query_rows(
        client, "SELECT token_hash, max(used_at) AS used_at FROM api_token_uses "
                "WHERE token_hash IN {hashes:Array(String)} GROUP BY token_hash",
        {"hashes": [row["token_hash"] for row in rows]})} if rows else {}
    return [ApiToken(row["token_hash"][:TOKEN_ID_CHARS], row["name"], row["user"], row["created_at"],
                     uses.get(row["token_hash"]), bool(row["revoked"]), row["token_hash"]) for row in rows]


def revoke_token(client: Client, id_or_name: str, *, actor: str, reason: str = "") -> ApiToken:
    """Revoke one token, named by its id or, when only one active token has it, by its name."""
    tokens = list_tokens(client)
    found = [t for t in tokens if t.id == id_or_name.lower()]
    if not found:
        found = [t for t in tokens if t.name == id_or_name and not t.revoked]
    if not found:
        raise NotFound(f"no active token with the id or name {id_or_name!r} (stepwatch tokens list)")
    if len(found) > 1:
        raise Conflict(f"several tokens are named {id_or_name!r}; revoke one by its id: "
                       + ", ".join(f"{t.id} ({t.user})" for t in found))
    token = found[0]
    if not token.revoked:
        _revoke(client, [token])
        audit.record(client, actor, "token.revoke", token.user, reason, {"name": token.name, "id": token.id})
    return token


def _revoke(client: Client, tokens: list[ApiToken]) -> None:
    if tokens:
        client.insert("api_tokens", [[t.token_hash, t.name, t.user, t.created_at, True, time.time_ns()]
                                     for t in tokens],
                      column_names=["token_hash", "name", "user", "created_at", "revoked", "version"])


def _token_hash(token: str) -> str:
    # Tokens are long random strings, so a fast hash is enough (no dictionary to guard against).
    return hashlib.sha256(token.encode()).hexdigest()


_uses_lock = threading.Lock()
_uses_written: dict[str, float] = {}  # token hash -> when this process last recorded a use (monotonic)


def _note_use(client: Client, token_hash: str) -> None:
    now = time.monotonic()
    with _uses_lock:
        last = _uses_written.get(token_hash)
        if last is not None and now - last < TOKEN_USE_EVERY_S:
            return
        if len(_uses_written) > 100_000:
            _uses_written.clear()
        _uses_written[token_hash] = now
    client.insert("api_token_uses", [[token_hash, datetime.now(UTC)]], column_names=["token_hash", "used_at"])


# -- sessions -----------------------------------------------------------------------------------

_ENDED = -1.0
_sessions_lock = threading.Lock()
_sessions_seen: dict[str, float] = {}  # session id -> when last seen open (monotonic), or _ENDED


def start_session(client: Client, user: str) -> str:
    """A new login's session id (random; it goes in the signed cookie)."""
    session_id = secrets.token_urlsafe(18)
    client.insert("sessions", [[session_id, user, datetime.now(UTC), False, time.time_ns()]],
                  column_names=["id", "user", "started_at", "ended", "version"])
    _remember(session_id, time.monotonic())
    return session_id


def session_open(client: Client, session_id: str) -> bool:
    now = time.monotonic()
    with _sessions_lock:
        seen = _sessions_seen.get(session_id)
    if seen == _ENDED:
        return False
    if seen is not None and now - seen < SESSION_RECHECK_S:
        return True
    rows = query_rows(client, "SELECT ended FROM sessions FINAL WHERE id = {id:String}", {"id": session_id})
    is_open = bool(rows) and not rows[0]["ended"]
    _remember(session_id, now if is_open else _ENDED)
    return is_open


def session_user(client: Client, name: str, session_id: str) -> User | None:
    """The active user of a login cookie whose session is still open; None otherwise."""
    user = find_user(client, name)
    if user is None or user.disabled or not session_open(client, session_id):
        return None
    return user


def end_session(client: Client, session_id: str) -> None:
    """Sign out: the session's cookie stops working, wherever it was copied."""
    _remember(session_id, _ENDED)
    client.command("INSERT INTO sessions SELECT id, user, started_at, true, {v:UInt64} FROM sessions FINAL "
                   "WHERE id = {id:String} AND NOT ended", parameters={"id": session_id, "v": time.time_ns()})


def end_sessions(client: Client, user: str) -> int:
    """End every open session of an account; returns how many there were."""
    rows = query_rows(client, "SELECT id, started_at FROM sessions FINAL WHERE user = {u:String} AND NOT ended",
                      {"u": user})
    for row in rows:
        _remember(row["id"], _ENDED)
    if rows:
        version = time.time_ns()
        client.insert("sessions", [[row["id"], user, row["started_at"], True, version] for row in rows],
                      column_names=["id", "user", "started_at", "ended", "version"])
    return len(rows)


def _remember(session_id: str, state: float) -> None:
    with _sessions_lock:
        if len(_sessions_seen) > 100_000:
            _sessions_seen.clear()
        _sessions_seen[session_id] = state


def _write(client: Client, user: User) -> None:
    client.insert("users", [[user.name, user.role, list(user.teams), user.manager_id, user.password_hash,
                             user.language, user.disabled, user.version, user.email]],
                  column_names=["name", "role", "teams", "manager_id", "password_hash", "language", "disabled",
                                "version", "email"])
