"""The audit log: every change anyone makes, with who, when and why.

Append-only in ClickHouse (`audit_log`); the one exception is erasing a person (stepwatch/privacy.py),
which deletes the entries about them and takes their id and name out of the others' details.

Who reads what: an admin every entry; anyone else (a director) what a `Reader` allows, worked out
at read time from the entry's own fields, so it holds for entries written before as after:

    their own actions              actor = the reader
    flag.*                         details.team, the flag's team when it changed
    team.assign                    details.team, the team before or after the move
    team.add                       the team in the object (site/team)
    band.set                       a band of their team (site/step/team), or of every team (site/step)
    coaching.*                     the object, an assignment id: those the reader may see (Reader.assignments)
    user.*, token.*                the object, an account name: the managers of their teams (Reader.accounts)

Anything else (sites, processes, the course catalog, mentors, other accounts) only admins read.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel.storage import query_rows


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    object: str
    reason: str
    details: dict[str, Any]


def cli_actor() -> str:
    """The actor name for a change made from the command line on the host."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def record(
    client: Client, actor: str, action: str, obj: str, reason: str = "", details: dict[str, Any] | None = None
) -> None:
    record_many(client, [(actor, action, obj, reason, details)])


def record_many(client: Client, changes: list[tuple[str, str, str, str, dict[str, Any] | None]]) -> None:
    """Several changes (actor, action, object, reason, details) in one insert, e.g. an analysis run's."""
    if changes:
        client.insert(
            "audit_log",
            [[actor, action, obj, reason, json.dumps(details or {}, sort_keys=True, default=str)]
             for actor, action, obj, reason, details in changes],
            column_names=["actor", "action", "object", "reason", "details"],
        )


@dataclass(frozen=True)
class Reader:
    """Whose entries someone who is not an admin reads (see the module's docstring)."""

    name: str  # their own actions
    teams: frozenset[str] = frozenset()  # entries about these teams, their flags and bands
    assignments: frozenset[str] = frozenset()  # the coaching assignments (ids) they may see
    accounts: frozenset[str] = frozenset()  # the accounts (names) whose changes they may see


# The entries a Reader reads; each line is one row of the table in the module's docstring.
_READABLE = """(
    {everything:Bool}
    OR actor = {reader:String}
    OR (startsWith(action, 'flag.') AND JSONExtractString(details, 'team') IN {teams:Array(String)})
    OR (action = 'team.assign' AND hasAny(JSONExtract(details, 'team', 'Array(String)'), {teams:Array(String)}))
    OR (action = 'team.add' AND splitByChar('/', object)[2] IN {teams:Array(String)})
    OR (action = 'band.set' AND (length(splitByChar('/', object)) = 2
                                 OR splitByChar('/', object)[3] IN {teams:Array(String)}))
    OR (startsWith(action, 'coaching.') AND object IN {assignments:Array(String)})
    OR ((startsWith(action, 'user.') OR startsWith(action, 'token.')) AND object IN {accounts:Array(String)})
)"""


def entries(
    client: Client,
    *,
    action: str | None = None,
    actor: str | None = None,
    obj: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = 200,
    reader: Reader | None = None,
) -> list[AuditEntry]:
    """The newest entries first; `action` matches a prefix ("flag." finds every flag change).
    `reader` None = every entry (an admin, the command line); else only what that reader may read."""
    rows = query_rows(
        client,
        f"""
        SELECT at, actor, action, object, reason, details FROM audit_log
        WHERE ({{action:String}} = '' OR startsWith(action, {{action:String}}))
          AND ({{actor:String}} = '' OR actor = {{actor:String}})
          AND ({{obj:String}} = '' OR object = {{obj:String}})
          AND ({{since:Nullable(Date)}} IS NULL OR toDate(at) >= {{since:Nullable(Date)}})
          AND ({{until:Nullable(Date)}} IS NULL OR toDate(at) <= {{until:Nullable(Date)}})
          AND {_READABLE}
        ORDER BY at DESC LIMIT {{limit:UInt32}}
        """,
        {"action": action or "", "actor": actor or "", "obj": obj or "", "since": since, "until": until,
         "limit": limit, "everything": reader is None, "reader": reader.name if reader else "",
         "teams": sorted(reader.teams) if reader else [], "assignments": sorted(reader.assignments) if reader else [],
         "accounts": sorted(reader.accounts) if reader else []},
    )
    return [AuditEntry(**{**row, "details": json.loads(row["details"] or "{}")}) for row in rows]
