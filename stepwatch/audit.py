"""The audit log: every change anyone makes, with who, when and why.

Append-only in ClickHouse (`audit_log`); nothing in stepwatch updates or deletes a row.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from stepwatch.storage import query_rows


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


def entries(
    client: Client,
    *,
    action: str | None = None,
    actor: str | None = None,
    obj: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """The newest entries first; `action` matches a prefix ("flag." finds every flag change)."""
    rows = query_rows(
        client,
        """
        SELECT at, actor, action, object, reason, details FROM audit_log
        WHERE ({action:String} = '' OR startsWith(action, {action:String}))
          AND ({actor:String} = '' OR actor = {actor:String})
          AND ({obj:String} = '' OR object = {obj:String})
          AND ({since:Nullable(Date)} IS NULL OR toDate(at) >= {since:Nullable(Date)})
          AND ({until:Nullable(Date)} IS NULL OR toDate(at) <= {until:Nullable(Date)})
        ORDER BY at DESC LIMIT {limit:UInt32}
        """,
        {"action": action or "", "actor": actor or "", "obj": obj or "", "since": since, "until": until,
         "limit": limit},
    )
    return [AuditEntry(**{**row, "details": json.loads(row["details"] or "{}")}) for row in rows]
