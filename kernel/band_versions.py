"""Stored band versions: the minimum, reference and maximum time of each step, by date of effect.

The rules about bands (consistency, which version is in force, suggestions from data) are the
analysis's (analysis/bands.py); this module only reads and writes the versions, and audits
every change with who, when and why.

A band holds for every kind of client (`stratum` "") or for the sessions of one value of a session
attribute the process declares (`stratum` "segment=vip"): how long that kind of client should take.
Versions of the same step, team and stratum supersede each other; `versions` gives the bands for
every kind unless asked for the others, so a reader that knows nothing of kinds never mistakes a
VIP band for the step's band.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import audit, processes, small_tables
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
    stratum: str = ""  # "" = every kind of client; else "name=value" of a declared session attribute


def parse_stratum(text: str) -> tuple[str, str] | None:
    """("segment", "vip") of "segment=vip"; None for "" (every kind). Not checked against a process."""
    text = text.strip()
    if not text:
        return None
    name, equals, value = text.partition("=")
    if not equals or not name.strip() or not value.strip():
        raise InvalidInput(f"stratum: write it as attribute=value, e.g. segment=vip (got {text!r})")
    return name.strip(), value.strip()


def check_stratum(process: processes.Process | None, text: str) -> str:
    """The stratum as stored ("name=value", or "" for every kind), refused unless the process declares the
    attribute and the value (the message names the field and what is declared)."""
    parsed = parse_stratum(text)
    if parsed is None:
        return ""
    name, value = parsed
    declared = process.attributes if process else {}
    if name not in declared:
        known = ", ".join(declared) or "none"
        raise InvalidInput(f"stratum: {name!r} is not a session attribute the process declares (declared: {known})")
    if value not in declared[name]:
        raise InvalidInput(f"stratum: {value!r} is not a declared value of {name} "
                           f"(declared: {', '.join(declared[name])})")
    return f"{name}={value}"


def kind_title(process: processes.Process | None, stratum: str) -> str:
    """How people call a band's kind of client, by the process's titles: "Client segment: VIP" for
    "segment=vip" (the keys themselves where no title is given); "" for every kind."""
    parsed = parse_stratum(stratum) if stratum else None
    if parsed is None:
        return ""
    name, value = parsed
    if process is None:
        return f"{name}: {value}"
    return f"{process.attribute_title(name)}: {process.value_title(name, value)}"


def add_version(
    client: Client, site: str, step: str, team: str, min_ms: int, reference_ms: int, max_ms: int,
    effective_from: date, *, actor: str, reason: str, stratum: str = "",
) -> None:
    """Record a band version; the caller has checked consistency (analysis.bands.Band). A `stratum` must
    be a value of a session attribute the site's process declares (InvalidInput otherwise)."""
    if not reason.strip():
        raise InvalidInput("a band change needs a reason (--reason)")
    stratum = check_stratum(processes.latest(client, site), stratum) if stratum.strip() else ""
    before = versions(client, site, step, stratum=stratum)
    client.insert(
        "bands",
        [[site, step, team, stratum, min_ms, reference_ms, max_ms, effective_from, actor, reason]],
        column_names=["site", "step", "team", "stratum", "min_ms", "reference_ms", "max_ms", "effective_from",
                      "set_by", "reason"],
    )
    previous = next((v for v in reversed(before) if v.team == team), None)
    details: dict[str, Any] = {
        "before": _values(previous) if previous else None,
        "after": {"min_ms": min_ms, "reference_ms": reference_ms, "max_ms": max_ms,
                  "effective_from": effective_from.isoformat()},
    }
    if stratum:  # only then, so an entry about a band for every kind reads as before
        details["stratum"] = stratum
    audit.record(client, actor, "band.set", f"{site}/{step}" + (f"/{team}" if team else ""), reason, details)


@small_tables.remembered("bands")
def versions(client: Client, site: str, step: str | None = None, *, stratum: str | None = "") -> list[StoredBand]:
    """Every version of a site's bands (one step's, if given), oldest first: those for every kind of
    client by default, one kind's with `stratum="segment=vip"`, all of them with `stratum=None`."""
    rows = query_rows(
        client,
        "SELECT site, step, team, stratum, min_ms, reference_ms, max_ms, effective_from, set_at, set_by, reason "
        "FROM bands WHERE site = {site:String} AND ({step:String} = '' OR step = {step:String}) "
        "AND ({any:Bool} OR stratum = {stratum:String}) "
        "ORDER BY step, team, stratum, effective_from, set_at",
        {"site": site, "step": step or "", "any": stratum is None, "stratum": stratum or ""},
    )
    return [StoredBand(**row) for row in rows]


def _values(version: StoredBand) -> dict[str, Any]:
    return {"min_ms": version.min_ms, "reference_ms": version.reference_ms, "max_ms": version.max_ms,
            "effective_from": version.effective_from.isoformat()}
