"""Whose data a user may see: the scope every page and action filters by.

admin     everything
director  the managers of the teams they lead (users.teams), and those teams' flags
manager   their own manager id only
trainer   the managers with a coaching assignment given to them (nobody else's figures)

The audit log: admins read every entry, directors their own actions and the entries about their
teams (audit_reader; kernel/audit.py lists which).
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

import coaching
from kernel import audit, sites, teams, users
from kernel.errors import Forbidden
from kernel.users import User


@dataclass(frozen=True)
class Scope:
    teams: frozenset[str] | None  # None = every team
    managers: frozenset[str] | None  # None = every manager
    team_of: dict[str, str]  # manager -> team, for the whole site

    def sees_manager(self, manager: str) -> bool:
        return self.managers is None or manager in self.managers

    def sees_team(self, team: str) -> bool:
        return self.teams is None or team in self.teams

    def require_manager(self, manager: str) -> None:
        if not self.sees_manager(manager):
            raise Forbidden("this manager's figures are outside what your account may see", code="manager_not_yours")


def scope_of(client: Client, user: User, site: str) -> Scope:
    team_of = teams.members(client, site) if site else {}
    if user.role == "admin":
        return Scope(None, None, team_of)
    if user.role == "director":
        led = frozenset(user.teams)
        return Scope(led, frozenset(m for m, t in team_of.items() if t in led), team_of)
    if user.role == "manager":
        return Scope(frozenset(), frozenset([user.manager_id]), team_of)
    return Scope(frozenset(), frozenset(trainees(client, user, site)), team_of)


def trainees(client: Client, user: User, site: str) -> set[str]:
    """The managers with a coaching assignment given to this trainer (as mentor), open or not."""
    return {a.manager for a in coaching.list_assignments(client, site, mentor=user.name)} if site else set()


def audit_reader(client: Client, user: User) -> audit.Reader | None:
    """What `user` reads of the audit log: None = every entry (an admin). A director: their own
    actions and the entries about the teams they lead, on every site: the coaching of those teams,
    the accounts of their managers and their own account. Anyone else: their own actions only."""
    if user.role == "admin":
        return None
    if user.role != "director":
        return audit.Reader(user.name)
    led = frozenset(user.teams)
    managers: set[str] = set()
    assignments: set[str] = set()
    for site in sites.list_sites(client):
        managers |= {m for m, t in teams.members(client, site.name).items() if t in led}
        assignments |= {a.assignment_id for a in coaching.list_assignments(client, site.name, user)}
    accounts = {u.name for u in users.list_users(client)
                if u.role == "manager" and (u.manager_id in managers or led & set(u.teams))}
    return audit.Reader(user.name, led, frozenset(assignments), frozenset(accounts | {user.name}))
