"""The read queries behind the overview and drawdowns pages: aggregated in ClickHouse, a few rows out.

Expected query patterns, all per site and over a range of days, filtered to the managers (or
teams) the viewer may see:

- the latest analysis run's figure per manager x step (`pair_stats`, a few thousand rows at most);
- the same figures over any range of days, as quantiles of per-session step times computed from
  the daily pre-aggregate (`session_steps`), never from raw visits;
- the headline numbers: service sessions per day and their median duration (`session_days`),
  active flags, and the median and 90th percentile time from a flag's opening to its resolution;
- the decisions' figures (`decisions`): time lost a week over the active drawdowns now and in the
  analysis run a week earlier, drawdowns new and resolved in the last 7 days, coaching under way
  and the time it saved, in one query;
- flags filtered, sorted and paged in ClickHouse (a site's flags accumulate: every resolved and
  dismissed one stays).

Every value is bound as a query parameter. `managers=None` means every manager of the site; an
empty list means nobody (a director who leads no team sees nothing, not everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import cluster, small_tables
from kernel.flag_store import COLUMNS as FLAG_COLUMNS
from kernel.flag_store import StoredFlag
from kernel.storage import METRIC_COLUMNS, older_refreshes_left_out, query_rows

ACTIVE_STATUSES = ("open", "acknowledged", "coaching")
# The flags whose minutes count as time lost (docs/analysis.md): a fast flag is possible skipped work.
DRAWDOWN_KINDS = ("slow", "systemic")
# How flags may be sorted: a name in, a fixed ORDER BY out (nothing from outside enters the SQL).
FLAG_ORDER = {"impact": "minutes_lost_per_week DESC, opened_at, flag_id",
              "age": "opened_at, minutes_lost_per_week DESC, flag_id"}


@dataclass(frozen=True)
class StoredRun:
    """The latest analysis run of a site: its window and when it ran."""

    window_start: date
    window_end: date
    run_at: datetime


@small_tables.remembered("pair_stats")
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

    The JSON row is unpacked in ClickHouse so only the fields shown travel; a field a run stored
    before it existed (`peers`, `start_date`) comes back as None.
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
               JSONExtract(row, 'flag_id', 'Nullable(String)') AS flag_id,
               JSONExtract(row, 'peers', 'slower_than', 'Nullable(Int64)') AS peers_slower_than,
               JSONExtract(row, 'peers', 'of', 'Nullable(Int64)') AS peers_of,
               JSONExtract(row, 'start_date', 'Nullable(String)') AS start_date,
               JSONExtract(row, 'start_at_least', 'Nullable(Bool)') AS start_at_least
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

    One session time is one session's time on a step on one day. A session that runs past midnight
    therefore counts once per day here, where the analysis sums its days: summing sessions exactly
    needs a GROUP BY over session ids that costs ten times as much (measured: 0.2 s against 0.02 s for
    two weeks of a million visits), for a difference only a service at midnight makes. Quantiles
    interpolate linearly, like the analysis (numpy's default = quantileExactInclusive).

    Read from pair_days (migration 0014): a day's session times of a pair come as arrays, so the
    grouping handles about 30 arrays per pair for 30 days instead of every session row (100 ms of CPU
    against 150 at 10 million visits; against 195 before the strings left the grouping of rows). Each
    day is read as its newest refresh, see `storage.older_refreshes_left_out`.
    """
    column = METRIC_COLUMNS[metric]  # a column chosen by name: nothing from outside enters the SQL
    parameters = {"site": site, "since": since, "until": until, "step": step, **_who(managers)}
    newest_only, newest = older_refreshes_left_out(client, site, since, until)
    rows = client.query(
        f"""
        SELECT any(manager) AS manager_, any(step) AS step_, sum(length({column})) AS n,
               quantilesExactInclusiveArray(0.5, 0.9)({column}) AS q
        FROM pair_days
        WHERE site = {{site:String}} AND day >= {{since:Date}} AND day <= {{until:Date}}
          {newest_only}
          {"" if managers is None else "AND manager IN {managers:Array(String)}"}
          {"AND step = {step:String}" if step else ""}
        GROUP BY pair
        ORDER BY manager_, step_
        """,
        parameters={**parameters, **newest},
        settings=cluster.GROUPS_ON_ONE_SHARD,  # a pair is one manager's: on one shard of a cluster
    ).result_rows
    return [{"manager": manager, "step": step_, "n": n, "median_ms": q[0], "p90_ms": q[1]}
            for manager, step_, n, q in rows]


def headline(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
             teams: list[str] | None) -> dict[str, Any]:
    """The overview's headline numbers for days `since` to `until` (both included), in two queries:

    sessions         service sessions started in the range (a session start event)
    median_service_ms   median time from a session's start to its end, over those that ended
    active_flags     flags open, acknowledged or in coaching now (of the given teams)
    resolved         flags resolved in the range; median_hours / p90_hours from opening to resolution

    `teams=None` means every team (flags are scoped by team: a systemic flag has no manager).
    A session that starts and ends on one day is timed from that day alone: if its id comes back on
    another day of the range (started again, or ended again after midnight), that day's start counts
    as a session of its own and a lone end counts for nothing.
    """
    start = datetime.combine(since, time())
    end = datetime.combine(until + timedelta(days=1), time())
    parameters = {"site": site, "since": since, "until": until, "start": start, "end": end,
                  "active": list(ACTIVE_STATUSES), "all_teams": teams is None, "teams": list(teams or []),
                  **_who(managers)}
    # Two queries: the sessions' (sharded on a cluster) and the flags' (small tables: on a cluster
    # read from the first shard alone, kernel/cluster.py), not one joining both, whose every part
    # would be a query of every shard.
    rows = query_rows(
        client,
        """
        -- session_days (migration 0013): a session's first start and last end per day, kept on
        -- ingest; a session over midnight has a row on each of its days. One FINAL scan merges a
        -- day's rows of one session (a start and an end arriving apart, a replay) and splits them:
        -- a row with both a start and an end is a session served within the day, timed as it is
        -- (its time goes into the median's state); the few others (a start or an end alone: over
        -- midnight, or never ended) are gathered as (session, start, end) and grouped by session
        -- across the range below. On a cluster the scan and both aggregates run on each shard, the
        -- node asked merges the states: one scan instead of three, and no session row travels
        -- (55 -> 40 ms for 30 days of 10 million visits on two shards; 22 ms embedded either way).
        WITH -- the other rows grouped by session: its first start and its last end in the range
             arrayMap(g -> (arrayMin(arrayMap(r -> r.2, g)), arrayMax(arrayMap(r -> r.3, g))),
                      arraySplit((r, i) -> i = 1 OR r.1 != others[i - 1].1, others, arrayEnumerate(others))
                     ) AS rest,
             arrayMap(g -> dateDiff('millisecond', assumeNotNull(g.1), assumeNotNull(g.2)),
                      arrayFilter(g -> g.1 IS NOT NULL AND g.2 IS NOT NULL AND g.2 >= g.1, rest)) AS rest_ms
        SELECT whole_sessions + length(arrayFilter(g -> g.1 IS NOT NULL, rest)) AS sessions,
               if(empty(rest_ms), finalizeAggregation(whole_ms),
                  arrayReduce('quantileExactInclusiveMerge(0.5)',
                              [whole_ms, arrayReduce('quantileExactInclusiveState(0.5)', rest_ms)])
                 ) AS median_service_ms
        FROM (
            SELECT countIf(started IS NOT NULL AND ended IS NOT NULL) AS whole_sessions,
                   quantileExactInclusiveStateIf(0.5)(
                       dateDiff('millisecond', assumeNotNull(started), assumeNotNull(ended)),
                       started IS NOT NULL AND ended IS NOT NULL AND ended >= started) AS whole_ms,
                   arraySort(r -> r.1, groupArrayIf((session, started, ended), started IS NULL OR ended IS NULL)
                            ) AS others
            FROM session_days FINAL
            WHERE site = {site:String} AND day >= {since:Date} AND day <= {until:Date}
              AND ({everyone:Bool} OR manager IN {managers:Array(String)})
        )
        """,
        parameters,
    ) + query_rows(
        client,
        """
        SELECT f.active_flags AS active_flags, r.resolved AS resolved, r.median_hours AS median_hours,
               r.p90_hours AS p90_hours
        FROM (
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
        parameters,
    )
    row = rows[0] | rows[1]
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


def decisions(client: Client, site: str, now: datetime, run_until: date | None, *, managers: list[str] | None,
              teams: list[str] | None, step: str = "") -> dict[str, Any]:
    """The overview's headline, in two queries (four small scans: flags, the coaching events and
    evaluations; one earlier run of pair_stats):

    minutes_lost        minutes a week lost over the active slow and systemic flags (a systemic flag's
                        minutes are the sum over its slow managers, so this is the sum over slow pairs)
    drawdowns           how many such flags; fast_flags: active fast flags (never time lost)
    new, resolved       drawdown flags opened, and resolved, in the 7 days up to `now`
    previous_minutes    the sum of time lost over the slow pairs of the latest run whose window ended at
                        least 7 days before `run_until` (None when there is no such run)
    coaching_active     assignments neither evaluated nor cancelled, of the managers in view
    coaching_evaluated, minutes_saved   assignments evaluated, and the sum of their latest evaluation's
                        minutes saved a week (negative = lost)

    Flags are scoped by team (a systemic flag has no manager), pairs and assignments by manager. The
    stored row's `minutes_lost_per_week` is read only on slow pairs: runs stored before it counted
    only them still say something for an `ok` pair.
    """
    week_ago = now - timedelta(days=7)
    before = (run_until - timedelta(days=7)) if run_until else date(1970, 1, 1)
    parameters = {"site": site, "week_ago": week_ago, "before": before, "step": step, "kinds": list(DRAWDOWN_KINDS),
                  "active": list(ACTIVE_STATUSES), "all_teams": teams is None, "teams": list(teams or []),
                  **_who(managers)}
    # Two queries, as in headline: the flags' and the coaching's (small tables), the earlier run's (sharded).
    rows = query_rows(
        client,
        """
        SELECT f.lost AS minutes_lost, f.drawdowns AS drawdowns, f.fast AS fast_flags, f.new AS new,
               f.resolved AS resolved, c.active AS coaching_active, c.evaluated AS coaching_evaluated,
               c.saved AS minutes_saved
        FROM (
            SELECT sumIf(minutes_lost_per_week, drawdown AND active) AS lost, countIf(drawdown AND active) AS drawdowns,
                   countIf(kind = 'fast' AND active) AS fast,
                   countIf(drawdown AND opened_at >= {week_ago:DateTime64(3, 'UTC')}) AS new,
                   countIf(drawdown AND status = 'resolved' AND resolved_at >= {week_ago:DateTime64(3, 'UTC')})
                       AS resolved
            FROM (SELECT kind, status, opened_at, resolved_at, minutes_lost_per_week,
                         kind IN {kinds:Array(String)} AS drawdown, status IN {active:Array(String)} AS active
                  FROM flags FINAL
                  WHERE site = {site:String} AND ({all_teams:Bool} OR team IN {teams:Array(String)})
                    AND ({step:String} = '' OR step = {step:String}))
        ) AS f
        CROSS JOIN (
            SELECT countIf(a.open) AS active, countIf(e.evaluations > 0) AS evaluated, sum(e.saved) AS saved
            FROM (SELECT assignment_id,
                         anyIf(JSONExtractString(payload, 'manager'), type = 'assigned') AS manager,
                         anyIf(JSONExtractString(payload, 'step'), type = 'assigned') AS step,
                         countIf(type IN ('evaluated', 'cancelled')) = 0 AS open,
                         countIf(type = 'cancelled') > 0 AS cancelled
                  FROM coaching_events WHERE site = {site:String} GROUP BY assignment_id) AS a
            LEFT JOIN (SELECT assignment_id, count() AS evaluations,
                              argMax(ifNull(minutes_saved_per_week, 0), checkpoint) AS saved
                       FROM coaching_evaluations FINAL WHERE site = {site:String} GROUP BY assignment_id
                      ) AS e USING (assignment_id)
            WHERE NOT a.cancelled AND ({everyone:Bool} OR a.manager IN {managers:Array(String)})
              AND ({step:String} = '' OR a.step = {step:String})
        ) AS c
        """,
        parameters,
    ) + query_rows(
        client,
        """
        -- The earlier run: its run_at found among the runs' windows first, then only its rows read.
        SELECT any(r.runs) AS previous_runs, any(r.until) AS previous_until,
               sumIf(JSONExtractFloat(row, 'minutes_lost_per_week'), JSONExtractString(row, 'status') = 'slow')
                   AS previous_minutes
        FROM (SELECT count() AS runs, argMax(window_end, run_at) AS until, max(run_at) AS at
              FROM (SELECT DISTINCT run_at, window_end FROM pair_stats
                    WHERE site = {site:String} AND window_end <= {before:Date})) AS r
        LEFT JOIN (SELECT run_at, row FROM pair_stats
                   WHERE site = {site:String} AND window_end <= {before:Date}
                     AND ({everyone:Bool} OR manager IN {managers:Array(String)})
                     AND ({step:String} = '' OR step = {step:String})) AS s ON s.run_at = r.at
        """,
        parameters,
    )
    row = rows[0] | rows[1]
    previous = None if run_until is None or not row["previous_runs"] else float(row["previous_minutes"])
    return {
        "minutes_lost_per_week": float(row["minutes_lost"]),
        "drawdowns": int(row["drawdowns"]),
        "fast_flags": int(row["fast_flags"]),
        "new_this_week": int(row["new"]),
        "resolved_this_week": int(row["resolved"]),
        "minutes_lost_per_week_previous": previous,
        "previous_until": row["previous_until"] if previous is not None else None,
        "coaching_active": int(row["coaching_active"]),
        "coaching_evaluated": int(row["coaching_evaluated"]),
        "minutes_saved_per_week": float(row["minutes_saved"] or 0.0),
    }


def _nan(value: Any) -> bool:
    return value is None or value != value


@dataclass(frozen=True)
class FlagPage:
    flags: list[StoredFlag]
    total: int  # flags matching the filters, on every page (or at least the flags shown, with count=False)


def find_flags(client: Client, site: str, *, teams: list[str] | None, statuses: tuple[str, ...] | list[str],
               kind: str | tuple[str, ...] = "", step: str = "", team: str = "", manager: str = "",
               sort: str = "impact", limit: int | None = None, offset: int = 0, count: bool = True,
               named: list[str] | tuple[str, ...] = ()) -> FlagPage:
    """A site's flags of the given teams (None = every team) and statuses, filtered, sorted and paged.

    `kind` is one kind, several (a tuple), or '' for every kind. `manager` matches part of a manager
    id, in any case, or of any manager of a systemic flag; so do the ids in `named` (the managers whose
    name matched it, from the directory).
    """
    where = """
        site = {site:String} AND status IN {statuses:Array(String)}
        AND ({all_teams:Bool} OR team IN {teams:Array(String)})
        AND (empty({kinds:Array(String)}) OR kind IN {kinds:Array(String)})
        AND ({step:String} = '' OR step = {step:String})
        AND ({team:String} = '' OR team = {team:String})
        AND ({needle:String} = '' OR positionCaseInsensitiveUTF8(manager, {needle:String}) > 0
             OR arrayExists(m -> positionCaseInsensitiveUTF8(m, {needle:String}) > 0, managers)
             OR manager IN {named:Array(String)} OR hasAny(managers, {named:Array(String)}))
    """
    parameters = {"site": site, "statuses": list(statuses), "all_teams": teams is None, "teams": list(teams or []),
                  "kinds": [kind] if isinstance(kind, str) and kind else list(kind),
                  "step": step, "team": team, "needle": manager, "named": list(named),
                  "limit": 2**32 - 1 if limit is None else limit, "offset": offset}
    rows = query_rows(
        client,
        f"SELECT {', '.join(FLAG_COLUMNS)} FROM flags FINAL WHERE {where} ORDER BY {FLAG_ORDER[sort]} "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
        parameters,
    )
    if count and limit is not None and (len(rows) == limit or (not rows and offset)):
        # Only a full (or empty) page leaves the total unknown; counting is a second pass over the flags.
        total = int(client.command(f"SELECT count() FROM flags FINAL WHERE {where}", parameters=parameters))
    else:
        total = offset + len(rows)
    flags = [StoredFlag(**{**row, "flag_id": str(row["flag_id"]),
                           "managers": tuple(row["managers"]), "reasons": tuple(row["reasons"])}) for row in rows]
    return FlagPage(flags, total)
