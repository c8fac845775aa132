"""Teams: which tracked managers work together, per site.

The analysis compares a manager with the other managers of the same team, raises a step-level
flag when much of a team is slow on one step, and directors see the teams they lead. A manager
id here is the one the CRM reports to the tracker (`stepwatch('identify', id)`).
"""

from __future__ import annotations

import re
import time

from clickhouse_connect.driver.client import Client

from kernel import audit, small_tables
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.storage import query_rows

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")


def add_team(client: Client, site: str, name: str, title: str = "", *, actor: str, reason: str = "") -> None:
    if not _NAME.match(name):
        raise InvalidInput("a team name is 1-63 letters, digits, _ . -, starting with a letter or digit")
    if name in list_teams(client, site):
        raise Conflict(f"team {name!r} exists already on site {site}")
    client.insert(
        "teams", [[site, name, title or name, time.time_ns()]], column_names=["site", "name", "title", "version"]
    )
    audit.record(client, actor, "team.add", f"{site}/{name}", reason, {"title": title or name})


@small_tables.remembered("teams")
def list_teams(client: Client, site: str) -> dict[str, str]:
    """Team name -> title."""
    rows = query_rows(client, "SELECT name, title FROM teams FINAL WHERE site = {site:String} ORDER BY name",
                      {"site": site})
    return {row["name"]: row["title"] for row in rows}


def assign(client: Client, site: str, team: str, managers: list[str], *, actor: str, reason: str = "") -> None:
    """Put managers in a team (a manager is in one team at a time); team "" removes them from teams."""
    if team and team not in list_teams(client, site):
        raise NotFound(f"no team {team!r} on site {site}: stepwatch teams add {team} --site {site}")
    if not managers:
        raise InvalidInput("name at least one manager id")
    before = members(client, site)
    version = time.time_ns()
    client.insert(
        "team_members",
        [[site, manager, team, version, actor] for manager in managers],
        column_names=["site", "manager", "team", "version", "changed_by"],
    )
    for manager in managers:
        audit.record(client, actor, "team.assign", f"{site}/{manager}", reason,
                     {"team": [before.get(manager, ""), team]})


@small_tables.remembered("team_members")
def members(client: Client, site: str) -> dict[str, str]:
    """Manager id -> team, for managers currently in a team."""
    rows = query_rows(
        client,
        "SELECT manager, team FROM team_members FINAL WHERE site = {site:String} AND team != '' ORDER BY manager",
        {"site": site},
    )
    return {row["manager"]: row["team"] for row in rows}
