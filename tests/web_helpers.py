"""Helpers for tests of the dashboards: accounts of every role, signing in through the real form."""

from __future__ import annotations

import re
from typing import Any

from kernel import storage, teams, users

PASSWORD = "correct horse battery"
SECRET = "test-secret-key-0123456789abcdef"  # the app's signing key in the tests
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def make_accounts(client: storage.Client, site: str = "crm") -> None:
    """Two teams (north: m1, m2; south: m3), and one account per role (plus a second manager)."""
    teams.add_team(client, site, "north", actor="test")
    teams.add_team(client, site, "south", actor="test")
    teams.assign(client, site, "north", ["m1", "m2"], actor="test")
    teams.assign(client, site, "south", ["m3"], actor="test")
    users.add_user(client, "ada", "admin", PASSWORD, actor="test")
    users.add_user(client, "dora", "director", PASSWORD, teams=("north",), actor="test")
    users.add_user(client, "tom", "trainer", PASSWORD, actor="test")
    users.add_user(client, "max", "manager", PASSWORD, teams=("north",), manager_id="m1", actor="test")
    users.add_user(client, "sam", "manager", PASSWORD, teams=("south",), manager_id="m3", language="ru",
                   actor="test")


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def login(api: Any, name: str, password: str = PASSWORD, next_path: str = "/") -> Any:
    """Sign in through the login form, like a browser; returns the final response."""
    form = await api.get("/login")
    token = csrf_of(await form.text())
    return await api.post("/login", data={"name": name, "password": password, "csrf": token, "next": next_path},
                          allow_redirects=False)


async def page_csrf(api: Any, path: str = "/audit") -> str:
    response = await api.get(path)
    return csrf_of(await response.text())
