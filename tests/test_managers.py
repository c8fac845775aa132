"""The directory of managers: a CSV imported idempotently with every bad row reported, names set one at
a time, every change audited, and pages showing names instead of the tracker's ids."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kernel import managers, sites, storage, teams
from kernel.errors import InvalidInput, NotFound
from stepwatch.cli import CliError, build_parser

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
