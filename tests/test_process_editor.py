"""The process editor and tester on the process page: admins add, rename, move and remove steps and edit
their URL rules, each save a new version with a required reason (audited); directors read; the tester
says which step an address counts as, or why none; `process show` -> TOML -> `process import` round-trips
what the editor made."""

from __future__ import annotations

import re
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kernel import audit, processes, sites, storage
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process
from tests.test_site_cost import cli
from tests.web_helpers import SECRET, csrf_of, login, make_accounts


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


def current(client: storage.Client) -> processes.Process:
    found = processes.latest(client, "crm")
    assert found is not None
    return found


async def post(api: Any, path: str, page: str, **fields: Any) -> str:
    response = await api.post(path, data={"csrf": csrf_of(page), "site": "crm", **fields})
    assert response.status == 200, response.status
    return await response.text()


# -- the kernel's edits ----------------------------------------------------------------------------


def test_edit_add_move_remove_keep_every_check(client: storage.Client, site: sites.Site) -> None:
    load_process(client)
    process = current(client)
    renamed = processes.edit_step(process, "offer", title="Quote", patterns=["/clients/{customer}/quote"],
                                  position=1)
    assert renamed.steps[0] == processes.Step("offer", "Quote", ("/clients/{customer}/quote",))
    assert [s.key for s in renamed.steps[1:]] == ["identification", "needs", "products", "contract", "payment",
                                                  "closing"]
    added = processes.edit_step(process, None, title="Follow-up call", patterns=["/calls/*"])
    assert added.steps[-1] == processes.Step("follow_up_call", "Follow-up call", ("/calls/*",))
    assert [s.key for s in processes.remove_step(process, "needs").steps].count("needs") == 0
    for patterns, code in ((["clients/*"], "rule_bad"), (["/clients/{customer}/needs"], "rule_taken"),
                           (["/x", "/x"], "rule_twice")):
        with pytest.raises(InvalidInput) as raised:
            processes.edit_step(process, None, title="New", patterns=patterns)
        assert (raised.value.field, raised.value.code) == ("patterns", code)
    with pytest.raises(InvalidInput) as raised:
        processes.edit_step(process, None, title="New", patterns=[], new_key="offer")
    assert raised.value.code == "step_key_taken"
    with pytest.raises(InvalidInput) as raised:  # two steps of one title could not be told apart on any page
        processes.edit_step(process, None, title="offer", patterns=[])
    assert (raised.value.field, raised.value.code) == ("title", "step_title_taken")
    assert processes.edit_step(process, "offer", title="Offer", patterns=[]).step("offer").patterns == ()  # itself
    with pytest.raises(InvalidInput) as raised:
        processes.save_edit(client, added, actor="ada", reason="  ")
    assert raised.value.field == "reason" and current(client).version == 1


# -- the tester ------------------------------------------------------------------------------------


def test_the_tester_names_the_step_or_says_why_none(client: storage.Client, site: sites.Site) -> None:
    load_process(client)
    process = current(client)
    found = processes.test_url(process, "https://crm.example.com/clients/4711/offers/99?tab=2#top")
    assert found.match == processes.Match("offer", "/clients/{customer}/offers/{offer}",
                                          "/clients/:customer/offers/:offer")
    assert found.ignored_query and found.ignored_hash
    missed = processes.test_url(process, "/clients/4711/offerz")
    assert missed.match is None and missed.pattern == "/clients/:id/offerz"
    assert missed.suggested_rule == "/clients/*/offerz"
    # the likeliest typo first, and only a few
    assert missed.near[0] == processes.NearMiss("offer", "/clients/{customer}/offer", 3, "offer", "offerz")
    assert len(missed.near) == 3
    slash = processes.test_url(process, "/clients/4711/needs/")
    assert slash.match is None and slash.near[0].segment == 0 and slash.near[0].step == "needs"


# -- the page --------------------------------------------------------------------------------------


async def test_admin_edits_every_way_each_a_version_with_its_reason(api: Any, client: storage.Client) -> None:
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    assert 'id="editor"' in page and 'action="/process/step?site=crm"' in page and "Save as version 2" in page
    assert '<a href="/extension?site=crm">Set up the extension</a>' in page  # the extension's setup page

    html = await post(api, "/process/step", page, step="offer", title="Quote", position="2",
                      patterns="/clients/{customer}/offer\n/clients/{customer}/quotes/{offer}", reason="CRM renamed it")
    assert "Saved as version 2: Quote." in html
    editor = html[html.index('id="editor"'):]
    assert '<p class="notice ok">Saved as version 2: Quote.</p>' in editor  # where the page opens after a save
    process = current(client)
    assert [s.key for s in process.steps][:3] == ["identification", "offer", "needs"]
    assert process.step("offer").patterns == ("/clients/{customer}/offer", "/clients/{customer}/quotes/{offer}")

    html = await post(api, "/process/step", html, title="Follow-up call", patterns="/calls/{call}", position="1",
                      reason="calls are a step too")
    assert current(client).steps[0] == processes.Step("follow_up_call", "Follow-up call", ("/calls/{call}",))

    html = await post(api, "/process/step/remove", html, step="closing", reason="no such page any more")
    assert "“Closing” is removed in version 4; its 0 visits stay, read-only." in html
    assert "closing" not in [s.key for s in current(client).steps]

    history = processes.history(client, "crm")
    assert [(h["version"], h["loaded_by"], h["reason"]) for h in history[:3]] == [
        (4, "ada", "no such page any more"), (3, "ada", "calls are a step too"), (2, "ada", "CRM renamed it")]
    assert [e.reason for e in audit.entries(client, action="process.load")][:3] == [
        "no such page any more", "calls are a step too", "CRM renamed it"]


async def test_a_save_without_a_reason_or_with_a_bad_rule_is_refused_at_its_field(api: Any,
                                                                                  client: storage.Client) -> None:
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    html = await post(api, "/process/step", page, step="needs", title="Needs", patterns="/clients/{customer}/needs",
                      reason="", next="/process#editor")
    assert 'id="error-reason"' in html and "Enter a reason: it is kept in the audit log" in html
    assert 'id="reason-needs" name="reason" maxlength="500" autocomplete="off" required aria-invalid="true" ' \
           'aria-describedby="error-reason"' in html
    html = await post(api, "/process/step", html, step="needs", title="Needs", patterns="clients//needs",
                      reason="typo", next="/process#editor")
    assert 'id="error-patterns"' in html and "is not a URL rule" in html
    assert '>clients//needs</textarea>' in html  # what was typed is kept
    assert current(client).version == 1


async def test_removing_a_step_with_visits_asks_first_and_its_history_stays(api: Any, client: storage.Client,
                                                                           settings: Settings) -> None:
    now = datetime.now(UTC)
    client.insert("step_visits", [["crm", uuid.uuid4(), 0, True, "m1", "s1", "", "sales", "payment", "/x", now, 1000,
                                   0, 0]],
                  column_names=["site", "visit_id", "seq", "final", "manager", "session_id", "customer", "process",
                                "step", "path", "started_at", "active_ms", "idle_ms", "hidden_ms"])
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    html = await post(api, "/process/step/remove", page, step="payment", reason="merged into contract",
                      next="/process#editor")
    assert "“Payment” has 1 visit stored. It stays, read-only" in html and 'name="confirm"' in html
    assert "payment" in [s.key for s in current(client).steps]
    html = await post(api, "/process/step/remove", html, step="payment", reason="merged into contract", confirm="1")
    assert "“Payment” is removed in version 2; its 1 visit stays, read-only." in html
    assert "payment" not in [s.key for s in current(client).steps]
    rows = storage.query_rows(client, "SELECT count() AS n FROM step_visits WHERE step = 'payment'")
    assert rows[0]["n"] == 1  # the history stays


async def test_a_director_reads_the_steps_and_tests_but_cannot_edit(api: Any, client: storage.Client) -> None:
    await login(api, "dora")
    page = await (await api.get("/process?test=https://crm.example.com/clients/4711/needs")).text()
    assert 'id="editor"' not in page and 'action="/process/step' not in page
    assert "/extension?" not in page  # an admin's page
    assert "This page counts as “Needs assessment”." in page
    data = await (await api.get("/api/v1/process?test=/clients/4711/nope")).json()
    assert data["can_edit"] is False and data["test"]["match"] is None
    assert data["test"]["suggested_rule"] == "/clients/*/nope"
    refused = await api.post("/api/v1/process/step", json={"title": "X", "reason": "y"},
                             headers={"X-CSRF-Token": csrf_of(page)})
    assert refused.status == 403 and current(client).version == 1


async def test_the_tester_speaks_russian(api: Any, client: storage.Client) -> None:
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    await api.post("/account/language", data={"csrf": csrf_of(page), "language": "ru", "next": "/process"})
    html = await (await api.get("/process?test=/clients/4711/offerz")).text()
    assert "Эта страница не относится ни к одному шагу" in html and "/clients/*/offerz" in html
    assert "Изменить шаги" in html


# -- TOML round trip -------------------------------------------------------------------------------


async def test_what_the_editor_makes_round_trips_through_show_and_import(api: Any, client: storage.Client,
                                                                          tmp_path: Path) -> None:
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    html = await post(api, "/process/step", page, step="needs", title="Потребности клиента", position="1",
                      patterns="/clients/{customer}/needs\n/needs/*", reason="editor")
    await post(api, "/process/step", html, title="Reports", key="reports", patterns="/reports/*", reason="editor")
    edited = current(client)
    code, shown = cli(client, "process", "show", "crm")
    assert code == 0
    toml = re.sub(r"^#.*\n", "", shown)
    assert tomllib.loads(toml)["steps"][0]["title"] == "Потребности клиента"
    sites.add_site(client, "copy", ["https://copy.example.com"], actor="test")
    path = tmp_path / "crm.toml"
    path.write_text(toml, encoding="utf-8")
    code, out = cli(client, "process", "import", str(path), "--site", "copy", "--reason", "copy of crm")
    assert code == 0 and "loaded as version 1" in out
    copied = processes.latest(client, "copy")
    assert copied is not None and copied.steps == edited.steps and copied.definition() == edited.definition()
