"""Small tables remembered per process while unchanged (kernel/small_tables.py), and the pages using it."""

from __future__ import annotations

from typing import Any

import pytest

from kernel import small_tables, storage, teams, users
from kernel.settings import Settings
from tests.web_helpers import PASSWORD, SECRET, login, make_accounts


def snapshot(client: storage.Client, memory: small_tables.Memory) -> Any:
    return small_tables.begin(memory, small_tables.versions(client))


def test_a_snapshot_answers_from_memory_until_the_table_changes(client: storage.Client) -> None:
    users.add_user(client, "ada", "admin", PASSWORD, actor="test")
    memory = small_tables.Memory()
    token = snapshot(client, memory)
    try:
        assert [u.name for u in users.list_users(client)] == ["ada"]
        # Written behind the snapshot's back: within it, the remembered read is answered again.
        users.add_user(client, "bob", "director", PASSWORD, actor="test")
        assert [u.name for u in users.list_users(client)] == ["ada"]
    finally:
        small_tables.end(token)
    assert [u.name for u in users.list_users(client)] == ["ada", "bob"]  # no snapshot: read directly

    token = snapshot(client, memory)  # the next request: users changed, read again
    try:
        assert [u.name for u in users.list_users(client)] == ["ada", "bob"]
    finally:
        small_tables.end(token)


def test_a_mutation_changes_the_version(client: storage.Client) -> None:
    """An ALTER ... UPDATE writes no new block, but a new data version: seen all the same."""
    users.add_user(client, "ada", "admin", PASSWORD, actor="test")
    before = small_tables.versions(client)["users"]
    client.command("ALTER TABLE users UPDATE language = 'ru' WHERE name = 'ada' SETTINGS mutations_sync = 1")
    assert small_tables.versions(client)["users"] != before
    memory = small_tables.Memory()
    token = snapshot(client, memory)
    try:
        assert users.get_user(client, "ada").language == "ru"
    finally:
        small_tables.end(token)


def test_remembered_values_are_copies(client: storage.Client, site: Any) -> None:
    teams.add_team(client, "crm", "north", actor="test")
    teams.assign(client, "crm", "north", ["m1"], actor="test")
    memory = small_tables.Memory()
    token = snapshot(client, memory)
    try:
        teams.members(client, "crm")["m9"] = "north"  # a caller changing what it got
        assert teams.members(client, "crm") == {"m1": "north"}
    finally:
        small_tables.end(token)


def test_only_listed_tables_may_be_remembered() -> None:
    with pytest.raises(ValueError):
        small_tables.remembered("step_visits")


async def test_pages_see_a_change_on_the_next_request(aiohttp_client: Any, settings: Settings,
                                                     client: storage.Client, site: Any) -> None:
    """Each page takes a snapshot: a team made between two requests shows on the second, and a
    password changed in between signs the account out."""
    from stepwatch.app import create_app

    make_accounts(client)
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))
    await login(api, "ada")
    first = await (await api.get("/api/v1/overview")).json()
    teams.add_team(client, "crm", "west", actor="test")
    second = await (await api.get("/api/v1/overview")).json()
    assert "west" not in first["teams"] and "west" in second["teams"]
    users.set_password(client, "ada", "another password 1", actor="test")  # ends her sessions
    assert (await api.get("/api/v1/overview")).status == 401
