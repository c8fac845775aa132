"""Teams: managers grouped per site, every change audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel import sites, storage, teams
from kernel.errors import Conflict, InvalidInput, NotFound
from tests.helpers import run_cli


def test_teams_and_membership(client: storage.Client, site: sites.Site) -> None:
    teams.add_team(client, "crm", "north", "North desk", actor="ann")
    teams.add_team(client, "crm", "south", actor="ann")
    with pytest.raises(Conflict):
        teams.add_team(client, "crm", "north", actor="ann")
    with pytest.raises(InvalidInput):
        teams.add_team(client, "crm", "bad name", actor="ann")
    teams.assign(client, "crm", "north", ["m-1", "m-2"], actor="ann", reason="new hires")
    teams.assign(client, "crm", "south", ["m-2"], actor="bob", reason="moved")
    assert teams.members(client, "crm") == {"m-1": "north", "m-2": "south"}
    teams.assign(client, "crm", "", ["m-1"], actor="bob")
    assert teams.members(client, "crm") == {"m-2": "south"}
    with pytest.raises(NotFound):
        teams.assign(client, "crm", "west", ["m-3"], actor="bob")
    moves = storage.query_rows(client, "SELECT object, details FROM audit_log WHERE action = 'team.assign' "
                                       "ORDER BY at")
    assert [(m["object"], json.loads(m["details"])["team"]) for m in moves] == [
        ("crm/m-1", ["", "north"]), ("crm/m-2", ["", "north"]), ("crm/m-2", ["north", "south"]),
        ("crm/m-1", ["north", ""]),
    ]


@pytest.mark.slow
def test_teams_cli(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}
    run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)
    assert run_cli("teams", "add", "north", "--site", "crm", env=env)[0] == 0
    code, out, err = run_cli("teams", "assign", "north", "m-1", "m-2", "--site", "crm", env=env)
    assert code == 0, err
    code, out, _ = run_cli("teams", "list", "--site", "crm", "--json", env=env)
    assert json.loads(out) == {"north": {"title": "north", "managers": ["m-1", "m-2"]}}
    code, _, err = run_cli("teams", "assign", "west", "m-1", "--site", "crm", env=env)
    assert code == 1 and "no team 'west'" in err
