"""The read queries behind the overview page: figures aggregated in ClickHouse, a few rows out.

Expected query patterns, all per site and over a range of days, filtered to the managers (or
teams) the viewer may see:

- the latest analysis run's figure per manager x step (`pair_stats`, a few thousand rows at most);
- the same figures over any range of days, as quantiles of per-session step times computed from
  the daily pre-aggregate (`session_steps`), never from raw visits;
- the headline numbers: service sessions per day and their median duration (`session_events`),
  active flags, and the median and 90th percentile time from a flag's opening to its resolution.

Every value is bound as a query parameter. `managers=None` means every manager of the site; an
empty list means nobody (a director who leads no team sees nothing, not everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from stepwatch.storage import METRIC_COLUMNS, query_rows

ACTIVE_STATUSES = ("open", "acknowledged", "coaching")


@dataclass(frozen=True)
class StoredRun:
    """The latest analysis run of a site: its window and when it ran."""

    window_start: date
    window_end: date
    run_at: datetime


def latest_run(client: Client, site: str) -> StoredRun | None:
    rows = query_rows(
        client,
        "SELECT window_start, window_end, run_at FROM pair_stats WHERE site = {site:String} "
        "ORDER BY run_at DESC LIMIT 1",
        {"site": site},
    )
    return StoredRun(**rows[0]) if rows else None


def _who(managers: list[str] | None) -> dict[str, Any]:
    return {"everyone": managers is None, "managers": list(managers or [])}


def stored_cells(client: Client, site: str, run_at: datetime, *, managers: list[str] | None,
                 step: str = "") -> list[dict[str, Any]]:
    """Per manager x step, the figures of the run made at `run_at` (see latest_run), as stored.

    The JSON row is unpacked in ClickHouse so only the fields shown travel.
    """
    return query_rows(
        client,
        """
        SELECT team, manager, step,
               JSONExtractUInt(row, 'n') AS n,
               JSONExtract(row, 'median_ms', 'Nullable(Float64)') AS median_ms,
               JSONExtract(row, 'p90_ms', 'Nullable(Float64)') AS p90_ms,
               JSONExtract(row, 'band', 'min_ms', 'Nullable(Int64)') AS min_ms,
               JSONExtract(row, 'band', 'reference_ms', 'Nullable(Int64)') AS reference_ms,
               JSONExtract(row, 'band', 'max_ms', 'Nullable(Int64)') AS max_ms,
               JSONExtractString(row, 'status') AS status,
               JSONExtract(row, 'minutes_lost_per_week', 'Nullable(Float64)') AS minutes_lost_per_week,
               JSONExtract(row, 'flag_id', 'Nullable(String)') AS flag_id
        FROM pair_stats
        WHERE site = {site:String} AND run_at = {run_at:DateTime64(3, 'UTC')}
          AND ({everyone:Bool} OR manager IN {managers:Array(String)})
          AND ({step:String} = '' OR step = {step:String})
        ORDER BY manager, step
        """,
        {"site": site, "run_at": run_at, "step": step, **_who(managers)},
    )


def range_cells(client: Client, site: str, since: date, until: date, *, managers: list[str] | None, step: str = "",
                metric: str = "visible") -> list[dict[str, Any]]:
    """Per manager x step, sessions, median and 90th percentile of the session times from `since` to
    `until` (both included), as of the last refresh of the pre-aggregate.

    A session's time on a step is the sum of its daily rows (a session may run past midnight), each
    day's newest version (two refreshes at once may leave two); quantiles interpolate linearly, like
    the analysis (numpy's default = quantileExactInclusive).
    """
    column = METRIC_COLUMNS[metric]  # a column chosen by name: nothing from outside enters the SQL
    return query_rows(
        client,
        f"""
        SELECT manager, step, count() AS n,
               quantileExactInclusive(0.5)(t) AS median_ms, quantileExactInclusive(0.9)(t) AS p90_ms
        FROM (
            SELECT manager, step, session_id, sum(t) AS t
            FROM (
                SELECT manager, step, session_id, day, argMax({column}, computed_at) AS t
                FROM session_steps
                WHERE site = {{site:String}} AND day >= {{since:Date}} AND day <= {{until:Date}}
                  AND ({{everyone:Bool}} OR manager IN {{managers:Array(String)}})
                  AND ({{step:String}} = '' OR step = {{step:String}})
                GROUP BY manager, step, session_id, day
            )
            GROUP BY manager, step, session_id
        )
        GROUP BY manager, step
        ORDER BY manager, step
        """,
        {"site": site, "since": since, "until": until, "step": step, **_who(managers)},
    )


def headline(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
             teams: list[str] | None) -> dict[str, Any]:
    """The overview's headline numbers for days `since` to `until` (both included), in one query:

    sessions         service sessions started in the range (a session start event)
    median_service_ms   median time from a session's start to its end, over those that ended
    active_flags     flags open, acknowledged or in coaching now (of the given teams)
    resolved         flags resolved in the range; median_hours / p90_hours from opening to resolution

    `teams=None` means every team (flags are scoped by team: a systemic flag has no manager).
    """
    start = datetime.combine(since, time())
    end = datetime.combine(until + timedelta(days=1), time())
    rows = query_rows(
        client,
        """
        SELECT s.sessions AS sessions, s.median_service_ms AS median_service_ms, f.active_flags AS active_flags,
               r.resolved AS resolved, r.median_hours AS median_hours, r.p90_hours AS p90_hours
        FROM (
            SELECT countIf(has_start) AS sessions,
                   quantileExactInclusiveIf(0.5)(dateDiff('millisecond', started, ended),
                                                 has_start AND has_end AND ended >= started) AS median_service_ms
            FROM (
                SELECT session_id, countIf(action = 'start') > 0 AS has_start, countIf(action = 'end') > 0 AS has_end,
                       minIf(at, action = 'start') AS started, maxIf(at, action = 'end') AS ended
                FROM session_events
                WHERE site = {site:String} AND at >= {start:DateTime64(3, 'UTC')} AND at < {end:DateTime64(3, 'UTC')}
                  AND ({everyone:Bool} OR manager IN {managers:Array(String)})
                GROUP BY session_id
            )
        ) AS s
        CROSS JOIN (
            SELECT count() AS active_flags FROM flags FINAL
            WHERE site = {site:String} AND status IN {active:Array(String)}
              AND ({all_teams:Bool} OR team IN {teams:Array(String)})
        ) AS f
        CROSS JOIN (
            SELECT count() AS resolved,
                   quantileExactInclusive(0.5)(hours) AS median_hours, quantileExactInclusive(0.9)(hours) AS p90_hours
            FROM (
                SELECT dateDiff('second', o.opened, r.resolved) / 3600 AS hours
                FROM (SELECT flag_id, min(at) AS opened FROM flag_events
                      WHERE site = {site:String} AND from_status = '' GROUP BY flag_id) AS o
                INNER JOIN (SELECT flag_id, max(at) AS resolved FROM flag_events
                            WHERE site = {site:String} AND to_status = 'resolved' GROUP BY flag_id
                            HAVING resolved >= {start:DateTime64(3, 'UTC')} AND resolved < {end:DateTime64(3, 'UTC')}
                           ) AS r USING (flag_id)
                INNER JOIN (SELECT flag_id, team FROM flags FINAL WHERE site = {site:String}
                            AND ({all_teams:Bool} OR team IN {teams:Array(String)})) AS t USING (flag_id)
            )
        ) AS r
        """,
        {"site": site, "start": start, "end": end, "active": list(ACTIVE_STATUSES), "all_teams": teams is None,
         "teams": list(teams or []), **_who(managers)},
    )
    row = rows[0]
    days = (until - since).days + 1
    empty = row["resolved"] == 0
    return {
        "days": days,
        "sessions": int(row["sessions"]),
        "sessions_per_day": round(row["sessions"] / days, 1),
        "median_service_ms": None if row["sessions"] == 0 or _nan(row["median_service_ms"])
        else float(row["median_service_ms"]),
        "active_flags": int(row["active_flags"]),
        "resolved_flags": int(row["resolved"]),
        "median_hours_to_resolve": None if empty else round(float(row["median_hours"]), 2),
        "p90_hours_to_resolve": None if empty else round(float(row["p90_hours"]), 2),
    }


def _nan(value: Any) -> bool:
    return value is None or value != value
