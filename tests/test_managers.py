"""The directory of managers: a CSV imported idempotently with every bad row reported, names set one at
a time, every change audited, and pages showing names instead of the tracker's ids."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import coaching
from coaching.lifecycle import Target
from kernel import flag_store, managers, sites, storage, teams
from kernel.errors import InvalidInput, NotFound
from kernel.settings import Settings
from stepwatch.app import create_app
from stepwatch.cli import CliError, build_parser
from tests.coaching_helpers import build_org, sign_in, today
from tests.dashboard_data import TODAY, load_process, make_flag, stats_row, store_pair_stats
from tests.web_helpers import SECRET, csrf_of, login, make_accounts

GOOD = "id,name,team,email\nm-001,Анна Петрова,north,anna@example.com\nm-002,Boris Ivanov,,\n"


def cli(client: storage.Client, *argv: str) -> tuple[int, str]:
    """A `stepwatch` command in this process on the test's database (as `serve` runs a forwarded one)."""
    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    return args.func(args, client, out), out.getvalue()


def audited(client: storage.Client, action: str) -> list[dict[str, object]]:
    return storage.query_rows(client, "SELECT actor, object, reason, details FROM audit_log "
                                      "WHERE action = {a:String} ORDER BY at, object", {"a": action})


@pytest.fixture
def crm(client: storage.Client) -> str:
    sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")
    teams.add_team(client, "crm", "north", actor="test")
    return "crm"


def test_import_names_managers_assigns_teams_and_is_idempotent(client: storage.Client, crm: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())  # a spreadsheet's "CSV UTF-8" starts with a BOM
    code, out = cli(client, "managers", "import", str(path), "--site", crm, "--reason", "HR export")
    assert code == 0 and "2 added, 0 changed, 0 unchanged, 1 moved to a team, 0 bad" in out
    assert managers.names(client, crm) == {"m-001": "Анна Петрова", "m-002": "Boris Ivanov"}
    assert managers.directory(client, crm)["m-001"].email == "anna@example.com"
    assert teams.members(client, crm) == {"m-001": "north"}
    assert [(e["object"], e["reason"], json.loads(str(e["details"]))["name"]) for e in audited(client, "manager.set")] \
        == [("crm/m-001", "HR export", ["", "Анна Петрова"]), ("crm/m-002", "HR export", ["", "Boris Ivanov"])]

    code, out = cli(client, "managers", "import", str(path), "--site", crm)
    assert code == 0 and "0 added, 0 changed, 2 unchanged, 0 moved to a team" in out
    assert len(audited(client, "manager.set")) == 2 and len(audited(client, "team.assign")) == 1
    assert storage.query_rows(client, "SELECT count() AS n FROM managers")[0]["n"] == 2


def test_import_reports_each_bad_row_by_line_and_keeps_the_good(client: storage.Client, crm: str,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,name,team,email\n"
                    "m-001,Анна Петрова,north,\n"        # 2 good
                    ",No Id,,\n"                        # 3 no id
                    "m-003,,,\n"                        # 4 no name
                    "m-004,Ok Name,,not-an-email\n"     # 5 bad e-mail
                    "m-001,Again,,\n"                   # 6 repeated id
                    "m-006,Too,many,cells,here\n"       # 7 wrong width
                    "\n"                                # 8 blank: skipped
                    "m-009,Nobody's Team,south,\n"      # 9 unknown team
                    '"m-010","Ольга ""Оля"" Смирнова",,\n', encoding="utf-8")  # 10 good, quoted
    code, out = cli(client, "managers", "import", str(path), "--site", crm, "--json")
    result = json.loads(out)
    assert code == 0 and result["added"] == ["m-001", "m-010"]
    assert [(b["line"], b["reason"].split(" ")[0]) for b in result["bad"]] == [
        (3, "Enter"), (4, "Enter"), (5, "Enter"), (6, "id"), (7, "5"), (9, "no")]
    assert "e-mail" in result["bad"][2]["reason"] and "south" in result["bad"][5]["reason"]
    assert managers.names(client, crm) == {"m-001": "Анна Петрова", "m-010": 'Ольга "Оля" Смирнова'}


def test_import_with_semicolons_and_without_optional_columns(client: storage.Client, crm: str,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("ID;Name\r\nm-001;Иван Иванов\r\n", encoding="utf-8")
    assert cli(client, "managers", "import", str(path), "--site", crm)[0] == 0
    assert managers.names(client, crm) == {"m-001": "Иван Иванов"}


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"id,title\nm-1,x\n", "no column name"),
    (b"id,name,phone\nm-1,x,1\n", "unknown column"),
    ("id,name\nm-1,Анна\n".encode("cp1251"), "not UTF-8"),
])
def test_unreadable_files_are_refused_whole(client: storage.Client, crm: str, tmp_path: Path, content: bytes,
                                            message: str) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        cli(client, "managers", "import", str(path), "--site", crm)
    assert managers.names(client, crm) == {}


def test_import_with_no_good_row_fails(client: storage.Client, crm: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,name\n,nobody\n", encoding="utf-8")
    out = io.StringIO()
    args = build_parser().parse_args(["managers", "import", str(path), "--site", crm])
    with pytest.raises(CliError, match="nothing imported"):
        args.func(args, client, out)
    assert "line 2: Enter the manager's id." in out.getvalue()
    with pytest.raises(CliError, match="cannot read"):
        cli(client, "managers", "import", str(tmp_path / "missing.csv"), "--site", crm)
    with pytest.raises(NotFound):
        cli(client, "managers", "import", str(path), "--site", "nosuchsite")


def test_set_and_list(client: storage.Client, crm: str) -> None:
    assert cli(client, "managers", "set", "m-007", "--site", crm, "--name", "  Мария   Кузнецова ",
               "--email", "maria@example.com")[1] == "manager m-007 is Мария Кузнецова <maria@example.com>\n"
    assert cli(client, "managers", "set", "m-007", "--site", crm, "--name", "Мария Кузнецова")[1].endswith(
        " already\n")  # the e-mail left out stays
    cli(client, "managers", "set", "m-007", "--site", crm, "--name", "Мария Соколова", "--reason", "married")
    teams.assign(client, crm, "north", ["m-007"], actor="test")
    listed = json.loads(cli(client, "managers", "list", "--site", crm, "--json")[1])
    assert listed == [{"id": "m-007", "name": "Мария Соколова", "team": "north", "email": "maria@example.com"}]
    assert cli(client, "managers", "list", "--site", crm)[1].splitlines()[1] == \
        "m-007\tМария Соколова\tnorth\tmaria@example.com"
    changes = [json.loads(str(e["details"]))["name"] for e in audited(client, "manager.set")]
    assert changes == [["", "Мария Кузнецова"], ["Мария Кузнецова", "Мария Соколова"]]
    with pytest.raises(InvalidInput, match="name"):
        cli(client, "managers", "set", "m-007", "--site", crm, "--name", " ")
    with pytest.raises(InvalidInput, match="e-mail"):
        cli(client, "managers", "set", "m-007", "--site", crm, "--name", "X", "--email", "nope")


def test_demo_managers_have_names(client: storage.Client) -> None:
    from stepwatch import demo

    demo.build(client, managers=25, days=2)
    known = managers.names(client, demo.SITE)
    assert known["m-001"] == "Анна Петрова" and known["m-025"] == "Анна Петрова 2" and len(known) == 25


# --- the pages: names where ids were, ids as secondary text, steps and courses by title ------------------------

ANNA, YANA = "Анна Петрова", "Яна Белова"  # m2 and m1: by name m2 comes first, by id m1


@pytest.fixture
def named_site(client: storage.Client) -> dict[str, flag_store.StoredFlag]:
    """tests.web_helpers' accounts and teams (north: m1, m2; south: m3), m1 and m2 named, m3 not; a latest
    analysis run over all three on the offer, and flags: m1 slow, a systemic one naming m1 and m2, m3 slow."""
    sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")
    make_accounts(client)
    load_process(client)
    managers.set_manager(client, "crm", "m1", name=YANA, actor="test")
    managers.set_manager(client, "crm", "m2", name=ANNA, actor="test")
    store_pair_stats(client, "crm", [stats_row("crm", "north", "m1", "offer", 300_000),
                                     stats_row("crm", "north", "m2", "offer", 100_000),
                                     stats_row("crm", "south", "m3", "offer", 100_000)],
                     TODAY - timedelta(days=13), TODAY)
    return {"m1": make_flag(client, "crm", manager="m1", minutes_lost=90),
            "systemic": make_flag(client, "crm", kind="systemic", manager="", managers=("m1", "m2"),
                                  step="contract", minutes_lost=50),
            "m3": make_flag(client, "crm", team="south", manager="m3", step="payment", minutes_lost=70)}


@pytest.fixture
async def web(aiohttp_client: Any, settings: Settings, client: storage.Client) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


async def test_overview_shows_names_in_name_order_and_json_beside_the_ids(web: Any, named_site: Any,
                                                                          client: storage.Client) -> None:
    await login(web, "ada")
    html = await (await web.get("/overview")).text()
    rows = re.findall(r'<th scope="row"><a href="/managers/(\w+)\?site=crm">(.*?)</a></th>', html)
    assert [m for m, _ in rows] == ["m2", "m1", "m3"]  # north by name, then south
    assert f'<span class="person" title="m1">{YANA}</span>' in rows[1][1]
    assert '<span class="person-id only">m3</span>' in rows[2][1]  # no name known: the id
    costliest = html.split('<h2 id="top">')[1].split("</table>")[0]
    assert f'<span class="person" title="m1">{YANA}</span>' in costliest  # the costliest drawdowns: name (id on hover)
    data = await (await web.get("/api/v1/overview")).json()
    assert {(c["manager"], c["manager_name"]) for c in data["heatmap"]} == {("m1", YANA), ("m2", ANNA), ("m3", None)}
    top = {d["manager"]: d for d in data["top_drawdowns"]}
    assert top["m1"]["manager_name"] == YANA and top[""]["manager_names"] == [YANA, ANNA]
    assert top["m3"]["manager_name"] is None

    exported = list(csv.DictReader(io.StringIO(await (await web.get("/overview?format=csv")).text())))
    assert {(r["manager"], r["manager_name"]) for r in exported} == {("m1", YANA), ("m2", ANNA), ("m3", "")}
    exported = list(csv.DictReader(io.StringIO(await (await web.get("/drawdowns?format=csv")).text())))
    assert {r["manager_name"] for r in exported} == {YANA, ""}
    managers.set_manager(client, "crm", "m3", name="Сергей Орлов", actor="test")  # seen on the next request
    assert "Сергей Орлов" in await (await web.get("/overview")).text()


async def test_drawdowns_show_names_and_are_found_by_name(web: Any, named_site: Any) -> None:
    await login(web, "ada")
    html = await (await web.get("/drawdowns")).text()
    assert f'<a href="/managers/m1?site=crm"><span class="person">{YANA}</span> <span class="person-id">m1</span>' \
        in html
    found = await (await web.get("/api/v1/drawdowns", params={"manager": "петрова"})).json()
    assert [f["flag_id"] for f in found["flags"]] == [named_site["systemic"].flag_id]  # Anna is in it
    found = await (await web.get("/api/v1/drawdowns", params={"manager": "ЯНА"})).json()
    assert {f["flag_id"] for f in found["flags"]} == {named_site["m1"].flag_id, named_site["systemic"].flag_id}
    assert {f["manager_name"] for f in found["flags"]} == {YANA, None}

    page = await (await web.get(f"/drawdowns/{named_site['m1'].flag_id}")).text()
    assert f"<h1>Slow: Offer, {YANA}</h1>" in page or (f"{YANA}</h1>" in page and "Offer" in page)
    page = await (await web.get(f"/drawdowns/{named_site['systemic'].flag_id}")).text()
    assert f'<span class="person">{YANA}</span> <span class="person-id">m1</span></a>, ' \
           f'<a href="/managers/m2?site=crm"><span class="person">{ANNA}</span>' in page
    data = await (await web.get(f"/api/v1/drawdowns/{named_site['systemic'].flag_id}")).json()
    assert data["flag"]["manager_names"] == [YANA, ANNA] and data["flag"]["manager_name"] is None


async def test_manager_page_and_my_figures_are_headed_by_the_name(web: Any, named_site: Any) -> None:
    await login(web, "ada")
    page = await (await web.get("/managers/m1")).text()
    assert f"<h1>{YANA}</h1>" in page and "Id in the CRM: m1" in page
    assert 'href="/managers?site=crm&amp;edit=m1#edit">Edit the name</a>' in page  # an admin's way to fix it
    flag_id = named_site["m1"].flag_id
    assert f'<th scope="row"><a href="/drawdowns/{flag_id}">Offer</a></th>' in page  # the flag's step by title
    data = await (await web.get("/api/v1/managers/m1")).json()
    assert data["manager"] == "m1" and data["manager_name"] == YANA
    page = await (await web.get("/managers/m3")).text()
    assert "<h1>Manager m3</h1>" in page and "Id in the CRM" not in page
    assert (await (await web.get("/api/v1/managers/m3")).json())["manager_name"] is None

    web.session.cookie_jar.clear()
    await login(web, "max")  # m1's own account
    page = await (await web.get("/me")).text()
    assert f"(as manager {YANA})" in page
    assert (await (await web.get("/api/v1/me")).json())["manager_name"] == YANA


async def test_the_step_page_lists_managers_by_name(web: Any, named_site: Any) -> None:
    await login(web, "ada")
    html = await (await web.get("/steps/offer")).text()
    rows = re.findall(r'<th scope="row"><a href="/managers/(\w+)\?site=crm">(.*?)</a></th>', html)
    assert [m for m, _ in rows] == ["m2", "m1", "m3"]  # by name (Anna, Yana), then the one without a name
    assert f'<span class="person">{YANA}</span> <span class="person-id">m1</span>' in rows[1][1]
    data = await (await web.get("/api/v1/steps/offer")).json()
    assert {(m["manager"], m["manager_name"]) for m in data["managers"]} == {("m1", YANA), ("m2", ANNA), ("m3", None)}


async def test_coaching_pages_show_names_step_and_course_titles(aiohttp_client: Any, settings: Settings,
                                                                client: storage.Client) -> None:
    sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")
    org = build_org(client, "crm")
    managers.set_manager(client, "crm", "m-1", name="Максим Орлов", actor="test")
    a = coaching.assign(client, settings, org.dana, site="crm", manager="m-1", step="offer", kind="course",
                        course_id="offer-basics", due=today() + timedelta(days=3), target=Target(240_000, 30))
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                      "analysis_interval_s": 0})))
    await sign_in(api, "dana")
    board = await (await api.get("/coaching")).text()
    assert '<span class="person">Максим Орлов</span> <span class="person-id">m-1</span>' in board
    assert re.search(r"<td[^>]*>Offer</td>", board) and "· Offer basics</td>" in board and "offer-basics" not in board
    (exported,) = csv.DictReader(io.StringIO(await (await api.get("/coaching?format=csv")).text()))
    assert (exported["manager_name"], exported["step_title"], exported["course_title"]) == \
        ("Максим Орлов", "Offer", "Offer basics")
    row = (await (await api.get("/api/v1/coaching")).json())["assignments"][0]
    assert (row["manager"], row["manager_name"], row["step_title"], row["course_title"]) == \
        ("m-1", "Максим Орлов", "Offer", "Offer basics")
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert "<h1>Coaching of Максим Орлов on Offer</h1>" in page and "· Offer basics" in page
    assert (await (await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")).json())["assignment"][
        "manager_name"] == "Максим Орлов"
    form = await (await api.get("/coaching/new")).text()
    assert '<option value="m-1">Максим Орлов (m-1)</option>' in form
    assert '<option value="offer">Offer</option>' in form and "Offer basics (Offer; self-paced)" in form
    catalog = await (await api.get("/coaching/catalog")).text()
    assert "<td>Offer, Needs assessment</td>" in catalog
    history = await (await api.get("/managers/m-1")).text()
    assert "<tr><td>Offer</td><td>course · Offer basics</td>" in history


async def test_admin_page_lists_the_directory_and_names_a_manager(web: Any, named_site: Any,
                                                                  client: storage.Client) -> None:
    await login(web, "ada")
    html = await (await web.get("/managers")).text()
    assert 'href="/managers"' in html  # in the navigation
    assert [m for m in re.findall(r'<td><a href="/managers/(\w+)\?site=crm">', html)] == ["m2", "m1", "m3"]
    data = await (await web.get("/api/v1/managers")).json()
    assert data["managers"][0] == {"manager": "m2", "name": ANNA, "team": "north", "email": ""}
    assert data["managers"][2]["name"] is None

    form = await (await web.get("/managers", params={"edit": "m3"})).text()
    assert 'action="/managers/m3/name"' in form
    response = await web.post("/managers/m3/name", data={"csrf": csrf_of(form), "site": "crm",
                                                         "name": "Сергей  Орлов", "email": "s@example.com",
                                                         "reason": "new hire"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/managers?site=crm"
    page = await (await web.get(response.headers["Location"])).text()
    assert "Saved: m3 is Сергей Орлов." in page
    assert managers.directory(client, "crm")["m3"] == managers.Manager("crm", "m3", "Сергей Орлов", "s@example.com")
    entry = audited(client, "manager.set")[-1]
    assert (entry["actor"], entry["object"], entry["reason"]) == ("ada", "crm/m3", "new hire")
    log = await (await web.get("/audit", params={"action": "manager."})).text()
    assert 'Manager m3 on site crm: name none → Сергей Орлов; e-mail none → s@example.com' in log  # named in words
    entries = (await (await web.get("/api/v1/audit", params={"object": "crm/m1"})).json())["entries"]
    assert {(e["action"], e["object_name"]) for e in entries} == {("manager.set", YANA), ("team.assign", YANA)}

    response = await web.post("/managers/m3/name", data={"csrf": csrf_of(form), "name": "  "},
                              allow_redirects=False)
    page = await (await web.get("/managers", params={"edit": "m3"})).text()
    assert response.status == 303 and 'id="error-name"' in page and "Enter the manager&#39;s name" in page
    response = await web.post("/managers/m3/name", data={"name": "No Token"}, allow_redirects=False)
    assert response.status == 403 and managers.names(client, "crm")["m3"] == "Сергей Орлов"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/managers/m3/name", {"name": " "}, "name"),
    ("/api/v1/managers/m3/name", {}, "name"),
    ("/api/v1/managers/m3/name", {"name": "x" * 201}, "name"),
    ("/api/v1/managers/m3/name", {"name": "x" * 1001}, "name"),
    ("/api/v1/managers/m3/name", {"name": ["a"]}, "name"),
    ("/api/v1/managers/m3/name", {"name": "Ok", "email": "nope"}, "email"),
    ("/api/v1/managers/m3/name", {"name": "Ok", "email": 5}, "email"),
    ("/api/v1/managers/m%01x/name", {"name": "Ok"}, "manager"),
    ("/api/v1/managers/" + "m" * 129 + "/name", {"name": "Ok"}, "manager"),
])
async def test_the_json_twin_refuses_bad_values_with_400_naming_the_field(web: Any, named_site: Any, path: str,
                                                                          body: dict[str, Any], field: str) -> None:
    await login(web, "ada")
    token = csrf_of(await (await web.get("/managers")).text())
    response = await web.post(path, json=body, headers={"X-CSRF-Token": token})
    assert response.status == 400, await response.text()
    assert (await response.json())["field"] == field


async def test_the_json_twin_names_a_manager_and_is_admins_only(web: Any, named_site: Any,
                                                                client: storage.Client) -> None:
    await login(web, "ada")
    token = csrf_of(await (await web.get("/managers")).text())
    answer = await (await web.post("/api/v1/managers/m2/name", json={"name": "Анна Сергеевна Петрова"},
                                   headers={"X-CSRF-Token": token})).json()
    assert answer["changed"] is True and answer["name"] == "Анна Сергеевна Петрова" and answer["manager"] == "m2"
    answer = await (await web.post("/api/v1/managers/m2/name", json={"name": "Анна Сергеевна Петрова"},
                                   headers={"X-CSRF-Token": token})).json()
    assert answer["changed"] is False
    missing = await web.post("/api/v1/managers/m2/name", json={"name": "X", "site": "nowhere"},
                             headers={"X-CSRF-Token": token})
    assert missing.status == 404
    web.session.cookie_jar.clear()
    await login(web, "dora")
    token = csrf_of(await (await web.get("/overview")).text())
    refused = await web.post("/api/v1/managers/m2/name", json={"name": "X"}, headers={"X-CSRF-Token": token})
    assert refused.status == 403 and (await web.get("/managers")).status == 403
