"""Stored drawdown flags: their current state, their versions and their history of status changes.

The rules (when a flag opens, which moves are allowed) are the analysis's (analysis/flags.py);
this module reads and writes. Every status change is a row in `flag_events` and in the audit log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import audit
from kernel.errors import NotFound
from kernel.storage import query_rows

COLUMNS = (
    "flag_id", "site", "kind", "team", "step", "manager", "managers", "status", "opened_at", "updated_at",
    "resolved_at", "window_start", "window_end", "n", "median_ms", "min_ms", "reference_ms", "max_ms", "q_value",
    "start_date", "periods_in_drawdown", "minutes_lost_per_week", "severity", "reasons",
    "periods_without_condition", "last_period", "version", "start_at_least",
)


@dataclass(frozen=True)
class StoredFlag:
    flag_id: str
    site: str
    kind: str
    team: str
    step: str
    manager: str
    managers: tuple[str, ...]
    status: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    window_start: date
    window_end: date
    n: int
    median_ms: float
    min_ms: int
    reference_ms: int
    max_ms: int
    q_value: float | None
    start_date: date | None
    periods_in_drawdown: int
    minutes_lost_per_week: float
    severity: int
    reasons: tuple[str, ...]
    periods_without_condition: int
    last_period: date
    version: int
    start_at_least: bool = False  # the data begins inside the drawdown: it began on start_date or earlier

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.kind, self.team, self.step, self.manager)


def current(client: Client, site: str, status: str | None = None) -> list[StoredFlag]:
    rows = query_rows(
        client,
        f"SELECT {', '.join(COLUMNS)} FROM flags FINAL WHERE site = {{site:String}} "
        "AND ({status:String} = '' OR status = {status:String}) ORDER BY severity, opened_at",
        {"site": site, "status": status or ""},
    )
    return [_flag(row) for row in rows]


def get(client: Client, flag_id: str) -> StoredFlag:
    rows = query_rows(
        client,
        f"SELECT {', '.join(COLUMNS)} FROM flags FINAL WHERE flag_id = {{id:String}}",
        {"id": flag_id},
    )
    if not rows:
        raise NotFound(f"no flag {flag_id}", field="flag_id", code="no_flag")
    return _flag(rows[0])


def write(client: Client, flags: list[StoredFlag]) -> None:
    """Store new versions of these flags (their `version` is set here)."""
    if not flags:
        return
    version = time.time_ns()
    rows = []
    for i, f in enumerate(flags):  # one copy of each flag, not one per column
        values = {c: getattr(f, c) for c in COLUMNS}
        values.update(version=version + i, managers=list(f.managers), reasons=list(f.reasons))
        rows.append([values[c] for c in COLUMNS])
    client.insert("flags", rows, column_names=list(COLUMNS))


def change_status(client: Client, flag: StoredFlag, to_status: str, *, actor: str, reason: str = "") -> StoredFlag:
    """Record a status change (already allowed by the rules) with who and why."""
    now = datetime.now(UTC)
    changed = replace(flag, status=to_status, updated_at=now,
                      resolved_at=now if to_status == "resolved" else None if to_status == "open" else flag.resolved_at)
    write(client, [changed])
    record_event(client, flag, flag.status, to_status, actor=actor, reason=reason)
    return changed


@dataclass(frozen=True)
class StatusChange:
    flag: StoredFlag
    from_status: str
    to_status: str
    actor: str
    reason: str


def record_event(
    client: Client, flag: StoredFlag, from_status: str, to_status: str, *, actor: str, reason: str
) -> None:
    record_events(client, [StatusChange(flag, from_status, to_status, actor, reason)])


def record_events(client: Client, changes: list[StatusChange]) -> None:
    """Status changes into flag_events and the audit log, one insert each (a run opens hundreds)."""
    if not changes:
        return
    client.insert("flag_events", [[c.flag.flag_id, c.flag.site, c.actor, c.from_status, c.to_status, c.reason]
                                  for c in changes],
                  column_names=["flag_id", "site", "actor", "from_status", "to_status", "reason"])
    audit.record_many(client, [
        (c.actor, f"flag.{c.to_status}", c.flag.flag_id, c.reason,
         {"from": c.from_status, "to": c.to_status, "kind": c.flag.kind, "step": c.flag.step,
          "manager": c.flag.manager, "team": c.flag.team})
        for c in changes
    ])


def history(client: Client, flag_id: str) -> list[dict[str, Any]]:
    return query_rows(
        client,
        "SELECT at, actor, from_status, to_status, reason FROM flag_events WHERE flag_id = {id:String} ORDER BY at",
        {"id": flag_id},
    )


def resolution_times(client: Client, site: str) -> list[dict[str, Any]]:
    """Per team: median and 90th percentile of hours from a flag's opening to its resolution."""
    return query_rows(
        client,
        """
        SELECT f.team AS team, count() AS resolved,
               quantile(0.5)(dateDiff('second', o.opened, r.resolved) / 3600) AS median_hours,
               quantile(0.9)(dateDiff('second', o.opened, r.resolved) / 3600) AS p90_hours
        FROM (SELECT flag_id, min(at) AS opened FROM flag_events WHERE site = {site:String} AND from_status = ''
              GROUP BY flag_id) AS o
        INNER JOIN (SELECT flag_id, max(at) AS resolved FROM flag_events
                    WHERE site = {site:String} AND to_status = 'resolved' GROUP BY flag_id) AS r USING (flag_id)
        INNER JOIN (SELECT flag_id, team FROM flags FINAL WHERE site = {site:String}) AS f USING (flag_id)
        GROUP BY team ORDER BY team
        """,
        {"site": site},
    )


def _flag(row: dict[str, Any]) -> StoredFlag:
    return StoredFlag(**{**row, "flag_id": str(row["flag_id"]), "managers": tuple(row["managers"]),
                         "reasons": tuple(row["reasons"])})
