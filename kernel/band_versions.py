"""Stored band versions: the minimum, reference and maximum time of each step, by date of effect.

The rules about bands (consistency, which version is in force, suggestions from data) are the
analysis's (analysis/bands.py); this module only reads and writes the versions, and audits
every change with who, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import audit, small_tables
from kernel.errors import InvalidInput
from kernel.storage import query_rows


@dataclass(frozen=True)
class StoredBand:
    site: str
    step: str
    team: str  # "" = the default for every team
    min_ms: int
    reference_ms: int
    max_ms: int
    effective_from: date
    set_at: datetime
    set_by: str
    reason: str


def add_version(
    client: Client, site: str, step: str, team: str, min_ms: int, reference_ms: int, max_ms: int,
    effective_from: date, *, actor: str, reason: str,
) -> None:
    """Record a band version; the caller has checked consistency (analysis.bands.Band)."""
    if not reason.strip():
        raise InvalidInput("a band change needs a reason (--reason)")
    before = versions(client, site, step)
    client.insert(
        "bands",
        [[site, step, team, min_ms, reference_ms, max_ms, effective_from, actor, reason]],
        column_names=["site", "step", "team", "min_ms", "reference_ms", "max_ms", "effective_from", "set_by", "reason"],
    )
    previous = next((v for v in reversed(before) if v.team == team), None)
    audit.record(client, actor, "band.set", f"{site}/{step}" + (f"/{team}" if team else ""), reason, {
        "before": _values(previous) if previous else None,
        "after": {"min_ms": min_ms, "reference_ms": reference_ms, "max_ms": max_ms,
                  "effective_from": effective_from.isoformat()},
    })


@small_tables.remembered("bands")
def versions(client: Client, site: str, step: str | None = None) -> list[StoredBand]:
    """Every version of a site's bands (one step's, if given), oldest first."""
    rows = query_rows(
        client,
        "SELECT site, step, team, min_ms, reference_ms, max_ms, effective_from, set_at, set_by, reason FROM bands "
        "WHERE site = {site:String} AND ({step:String} = '' OR step = {step:String}) "
        "ORDER BY step, team, effective_from, set_at",
        {"site": site, "step": step or ""},
    )
    return [StoredBand(**row) for row in rows]


def _values(version: StoredBand) -> dict[str, Any]:
    return {"min_ms": version.min_ms, "reference_ms": version.reference_ms, "max_ms": version.max_ms,
            "effective_from": version.effective_from.isoformat()}
