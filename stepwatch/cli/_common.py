"""What the command modules share: the error they raise, durations, dates, tables."""

from __future__ import annotations

from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import durations, processes, sites


class CliError(Exception):
    """A message for the operator; the command exits non-zero."""


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _tsv(value: Any) -> str:
    text = _json_default(value) if not isinstance(value, str | int | float) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def parse_duration(text: str) -> int:
    """"240", "240s", "4m", "4m30s", "1500ms", "1h" -> milliseconds (a bare number is seconds)."""
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def format_duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def _line(*values: Any) -> str:
    """One row of a tab-separated table."""
    return "\t".join(str(v) for v in values) + "\n"


def _process_of(client: Client, site: str) -> processes.Process:
    sites.get_site(client, site)
    process = processes.latest(client, site)
    if process is None:
        raise CliError(f"site {site} has no process yet: stepwatch process load FILE --site {site}")
    return process
