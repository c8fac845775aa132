"""Accounts: who may see and change what, with passwords hashed by Argon2id and API tokens.

Roles: `admin` (everything), `director` (the teams they lead), `trainer` (also mentors: what is
assigned to them), `manager` (their own figures, through the manager id the tracker reports).
Every change to an account is audited; passwords and tokens never appear in the audit log.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from clickhouse_connect.driver.client import Client

from stepwatch import audit, small_tables
from stepwatch.errors import Conflict, InvalidInput, NotFound
from stepwatch.storage import query_rows

ROLES = ("admin", "director", "trainer", "manager")
LANGUAGES = ("en", "ru")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # Argon2id with the library's current recommended parameters


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


@small_tables.remembered("users")
def list_users(client: Client) -> list[User]:
    rows = query_rows(client, "SELECT name, role, teams, manager_id, password_hash, language, disabled, version "
                              "FROM users FINAL ORDER BY name")
    return [User(**{**row, "teams": tuple(row["teams"])}) for row in rows]


def get_user(client: Client, name: str) -> User:
    for user in list_users(client):
        if user.name == name:
            return user
    raise NotFound(f"no user named {name!r}")


def add_user(client: Client, name: str, role: str, password: str, *, teams: tuple[str, ...] = (),
             manager_id: str = "", language: str = "en", actor: str, reason: str = "") -> User:
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
    user = User(name, role, tuple(teams), manager_id, hash_password(password), language, False, time.time_ns())
    _write(client, user)
    audit.record(client, actor, "user.add", name, reason,
                 {"role": role, "teams": list(teams), "manager_id": manager_id})
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


def check_password(client: Client, name: str, password: str) -> User | None:
    """The user if the password is theirs and the account is active; None otherwise (same cost)."""
    try:
        user = get_user(client, name)
    except NotFound:
        _HASHER.hash(password)  # spend the same time: no hint whether the name exists
        return None
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return None if user.disabled else user


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def new_password() -> str:
    return secrets.token_urlsafe(12)


def create_token(client: Client, user: str, name: str, *, actor: str) -> str:
    """A new API token for a user; returns it (shown once: only its hash is stored)."""
    get_user(client, user)
    token = "swt_" + secrets.token_urlsafe(32)
    client.insert("api_tokens", [[_token_hash(token), name, user, False, time.time_ns()]],
                  column_names=["token_hash", "name", "user", "revoked", "version"])
    audit.record(client, actor, "token.add", user, "", {"name": name})
    return token


def user_for_token(client: Client, token: str) -> User | None:
    rows = query_rows(client, "SELECT user, revoked FROM api_tokens FINAL WHERE token_hash = {h:String}",
                      {"h": _token_hash(token)})
    if not rows or rows[0]["revoked"]:
        return None
    user = get_user(client, rows[0]["user"])
    return None if user.disabled else user


def _token_hash(token: str) -> str:
    # Tokens are long random strings, so a fast hash is enough (no dictionary to guard against).
    return hashlib.sha256(token.encode()).hexdigest()


def _write(client: Client, user: User) -> None:
    client.insert("users", [[user.name, user.role, list(user.teams), user.manager_id, user.password_hash,
                             user.language, user.disabled, user.version]],
                  column_names=["name", "role", "teams", "manager_id", "password_hash", "language", "disabled",
                                "version"])
