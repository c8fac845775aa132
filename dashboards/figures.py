"""What the dashboards show about step times, aggregated in ClickHouse: read-only queries.

A page asks for the figures of one manager (every step) or of one step (every visible manager):
quantiles over a window, a histogram on a log time scale, weekly medians, visits by source, the
latest analysis verdicts, flag histories and a suggested band. Each function is one query that
aggregates inside ClickHouse, so what crosses into Python is a few hundred numbers whatever the
number of sessions behind them; every value is bound as a query parameter.

Session times come from the daily pre-aggregate (see storage.refresh_session_steps), i.e. as of
the latest analysis run (`stepwatch serve` runs it every 5 minutes): one session's time on a step
in a day is the unit here. A manager's figures read `session_steps` (a row per session, FINAL),
whose order finds one manager's rows; a step's read `pair_days` (a day's times of a manager x step
as an array), where one step's rows are a few thousand arrays. The analysis
sums a session's rows over the days (a session on a step on both sides of midnight is one
session there, two here): summing needs a GROUP BY over every session of the range, which costs
a step's page about ten times its whole budget at 10 million visits, for a case that business
hours make rare. Quantiles are `quantileExactInclusive`: linear interpolation, as numpy and the
analysis compute them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from dashboards.overview_figures import latest_run
from kernel import cluster, flag_store
from kernel.storage import METRIC_COLUMNS, older_refreshes_left_out, query_rows

#: Histogram bins on a log time scale: 4 per doubling (each bin 19% wider than the one before),
#: fine enough to show a shape, coarse enough that 30 sessions do not look like noise.
BINS_PER_DOUBLING = 4
#: Quantiles of a distribution, in the order `Distribution` lists them.
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

# grouping(k, bin, week) of each grouping set: a bit is 1 where that column is NOT grouped on.
_BY_KEY, _BY_KEY_BIN, _BY_KEY_WEEK, _BY_BIN, _BY_WEEK = 0b011, 0b001, 0b010, 0b101, 0b110


@dataclass(frozen=True)
class Distribution:
    """Session times of one manager x step (or one step) over a window, in milliseconds."""

    n: int
    p10_ms: float | None = None
    p25_ms: float | None = None
    median_ms: float | None = None
    p75_ms: float | None = None
    p90_ms: float | None = None
    above_max: int | None = None  # sessions slower than the band's max (None: no band given)
    below_min: int | None = None


@dataclass(frozen=True)
class Bin:
    """Sessions whose time is in [from_ms, to_ms): one bar of a log-scale histogram."""

    from_ms: float
    to_ms: float
    sessions: int


@dataclass(frozen=True)
class Week:
    week: date  # its Monday
    sessions: int
    median_ms: float


@dataclass(frozen=True)
class Figures:
    """A distribution, histogram and weekly medians per key (a step or a manager), and overall."""

    by_key: dict[str, Distribution] = field(default_factory=dict)
    bins_by_key: dict[str, list[Bin]] = field(default_factory=dict)
    weeks_by_key: dict[str, list[Week]] = field(default_factory=dict)
    bins: list[Bin] = field(default_factory=list)  # every key together (detail=False)
    weeks: list[Week] = field(default_factory=list)


def bin_edges(index: int) -> tuple[float, float]:
    """Bin `index` covers [1 s x 2^(index/4), 1 s x 2^((index+1)/4)); bin 0 starts at one second."""
    return (1000 * 2 ** (index / BINS_PER_DOUBLING), 1000 * 2 ** ((index + 1) / BINS_PER_DOUBLING))


def _sessions(column: str, where: str) -> str:
    """One row per session, step and day: its time (t) and day (d), the newest version (FINAL).

    The time as a 32-bit number: a session's time on a step in a day is far below 2^32 ms (49 days;
    capped there), and the quantiles gather half the bytes (a step's page: about 10% less CPU)."""
    return (f"SELECT manager, step, day AS d, toUInt32(least({column}, 4294967295)) AS t "
            f"FROM session_steps FINAL WHERE {where}")


# A row's partition (the month of its day) follows from its key, so FINAL need not merge across
# partitions, which lets ClickHouse skip the parts that have nothing to collapse.
_FINAL_SETTINGS = "SETTINGS do_not_merge_across_partitions_select_final = 1"


def _filters(site: str, since: date, until: date, manager: str | None, step: str | None,
             managers: Collection[str] | None, day: str = "day") -> tuple[str, dict[str, Any]]:
    """The WHERE clause and its parameters; `day` is the expression that gives a row's day."""
    where = ["site = {site:String}", f"{day} >= {{since:Date}}", f"{day} < {{end:Date}}"]
    parameters: dict[str, Any] = {"site": site, "since": since, "end": until + timedelta(days=1)}
    if manager is not None:
        where.append("manager = {manager:String}")
        parameters["manager"] = manager
    if step is not None:
        where.append("step = {step:String}")
        parameters["step"] = step
    if managers is not None:
        where.append("has({managers:Array(String)}, manager)")
        parameters["managers"] = sorted(managers)
    return " AND ".join(where), parameters


def distributions(
    client: Client, site: str, *, key: Literal["step", "manager"], since: date, until: date,
    trend_since: date | None = None, metric: str = "visible", manager: str | None = None, step: str | None = None,
    managers: Collection[str] | None = None, limits: Mapping[str, tuple[int, int]] | None = None,
    default_limits: tuple[int, int] | None = None, detail: bool = True,
) -> Figures:
    """Quantiles per key over [since, until]; histogram of that window and weekly medians from
    trend_since (a Monday; None: no weekly medians) to until, per key when `detail`, else for all
    keys together.

    `key` is what the figures are grouped by: "step" for one manager's page (manager=...), "manager"
    for one step's page (step=..., managers=the visible ones, None = all). `limits` gives each key's
    band (min_ms, max_ms) for the counts of sessions outside it, `default_limits` the band of the
    keys not in `limits` (none: not counted). One query: GROUPING SETS over session_steps for a
    manager's figures, their UNION over pair_days' arrays for a step's (key="manager"), after a
    check for older refreshes.
    """
    if managers is not None and not managers:
        return Figures()
    if key not in ("step", "manager"):
        raise ValueError(f"figures are grouped by step or manager, not {key!r}")
    column = METRIC_COLUMNS[metric]
    where, parameters = _filters(site, min(since, trend_since or since), until, manager, step, managers)
    limits = dict(limits or {})
    parameters.update({
        "window": since, "per_doubling": BINS_PER_DOUBLING,
        "limit_keys": list(limits), "limit_mins": [int(v[0]) for v in limits.values()],
        "limit_maxes": [int(v[1]) for v in limits.values()],
        "default_min": int(default_limits[0]) if default_limits else 0,
        "default_max": int(default_limits[1]) if default_limits else 0,
    })
    if key == "manager":  # one step: its days' session times as arrays, a few rows per manager
        newest_only, newest = older_refreshes_left_out(client, site, parameters["since"], until)
        parameters.update(newest)
        sql = _pair_days_figures(key, column, f"{where} {newest_only}", detail, trend=trend_since is not None)
    else:
        sql = _session_figures(key, column, where, detail, trend=trend_since is not None)
    rows = client.query(sql, parameters=parameters).result_rows
    figures = Figures()
    for g, k, bin_index, week, n_window, q, above, below, n_all, median_all in rows:
        if g == _BY_KEY:
            has_band = k in limits or default_limits is not None
            figures.by_key[k] = Distribution(n_window, *_quantiles(q, n_window),
                                             above_max=int(above) if has_band else None,
                                             below_min=int(below) if has_band else None)
        elif g in (_BY_KEY_BIN, _BY_BIN) and n_window:
            target = figures.bins_by_key.setdefault(k, []) if g == _BY_KEY_BIN else figures.bins
            target.append(Bin(*bin_edges(int(bin_index)), int(n_window)))
        elif g in (_BY_KEY_WEEK, _BY_WEEK) and trend_since is not None and week >= trend_since:
            target_weeks = figures.weeks_by_key.setdefault(k, []) if g == _BY_KEY_WEEK else figures.weeks
            target_weeks.append(Week(week, int(n_all), float(median_all)))
    return figures


# The band limits of a row's key, and whether its day is in the window (not only in the trend).
_LIMITS = ("transform(k, {limit_keys:Array(String)}, {limit_maxes:Array(UInt64)}, {default_max:UInt64}) AS high, "
           "transform(k, {limit_keys:Array(String)}, {limit_mins:Array(UInt64)}, {default_min:UInt64}) AS low, "
           "d >= {window:Date} AS in_window")


def _bin(t: str) -> str:
    return f"toInt32(floor(log2(greatest({t}, 1) / 1000) * {{per_doubling:UInt8}}))"


def _session_figures(key: str, column: str, where: str, detail: bool, *, trend: bool) -> str:
    """The figures from session_steps, a row per session, step and day (FINAL), in GROUPING SETS: by
    key, key x bin and key x week (bin and week alone when not `detail`). Its order (day, manager,
    step) finds one manager's rows in a few ranges per day."""
    sets = "(k), (k, bin), (k, week)" if detail else "(k), (bin), (week)"
    # without a trend every session falls in one dummy week: grouping() needs the column all the same
    week = "toMonday(d)" if trend else "toDate(0)"
    return f"""
        SELECT grouping(k, bin, week) AS g, k, bin, week,
               countIf(in_window) AS n_window,
               quantilesExactInclusiveIf({", ".join(map(str, QUANTILES))})(t, in_window) AS q,
               countIf(in_window AND t > high) AS above, countIf(in_window AND t < low) AS below,
               count() AS n_all, quantileExactInclusive(0.5)(t) AS median_all
        FROM (
            SELECT k, d, t, {week} AS week, {_bin("t")} AS bin, {_LIMITS}
            FROM (SELECT toString({key}) AS k, d, t FROM ({_sessions(column, where)}))
        )
        GROUP BY GROUPING SETS ({sets})
        ORDER BY g, k, bin, week
        {_FINAL_SETTINGS}
        """


def _pair_days_figures(key: str, column: str, where: str, detail: bool, *, trend: bool) -> str:
    """The same figures (the same columns and groupings) from pair_days: a day's session times of a
    manager x step as one array. A step's page gathers a few thousand arrays instead of every
    session of the window, read from every step's rows (session_steps is ordered by day, manager,
    step). `where` leaves out the older refreshes (storage.older_refreshes_left_out). Each part of the UNION
    is one grouping set of _session_figures."""
    rows = (f"SELECT k, d, t, {_LIMITS} FROM (SELECT toString({key}) AS k, day AS d, {column} AS t "
            f"FROM pair_days WHERE {where})")
    k = "k" if detail else "''"
    by_week = f"""
        UNION ALL
        SELECT {_BY_KEY_WEEK if detail else _BY_WEEK} AS g, {k} AS k, 0 AS bin, toMonday(d) AS week, 0 AS n_window,
               [] AS q, 0 AS above, 0 AS below, sum(length(t)) AS n_all,
               quantileExactInclusiveArray(0.5)(t) AS median_all
        FROM ({rows}) GROUP BY k, week"""
    return f"""
        SELECT g, k, bin, week, n_window, q, above, below, n_all, median_all FROM (
            SELECT {_BY_KEY} AS g, k, 0 AS bin, toDate(0) AS week, sumIf(length(t), in_window) AS n_window,
                   quantilesExactInclusiveArrayIf({", ".join(map(str, QUANTILES))})(t, in_window) AS q,
                   sumIf(arrayCount(x -> x > high, t), in_window) AS above,
                   sumIf(arrayCount(x -> x < low, t), in_window) AS below, 0 AS n_all, 0 AS median_all
            FROM ({rows}) GROUP BY k
            UNION ALL
            SELECT {_BY_KEY_BIN if detail else _BY_BIN} AS g, {k} AS k, {_bin("x")} AS bin, toDate(0) AS week,
                   count() AS n_window, [] AS q, 0 AS above, 0 AS below, 0 AS n_all, 0 AS median_all
            FROM ({rows}) ARRAY JOIN t AS x WHERE in_window GROUP BY k, bin
            {by_week if trend else ""}
        )
        ORDER BY g, k, bin, week
        """


def _quantiles(values: list[float], n: int) -> list[float | None]:
    if not n:
        return [None] * len(QUANTILES)
    return [None if v is None or math.isnan(v) else float(v) for v in values]


def visit_sources(client: Client, site: str, since: date, until: date, *, manager: str | None = None,
                  step: str | None = None, managers: Collection[str] | None = None, tracked: bool = True,
                  ) -> dict[tuple[str, str], dict[str, int]]:
    """Visits per manager x step from [since, until], tracked by the tracker or imported from an
    event log (`source` = import:<file>), each visit counted once whatever its checkpoints.

    `tracked=False` counts only the imported ones: counting every visit of a step over all its
    managers reads all their checkpoints (a tenth of a second at 10 million visits), while the
    imported ones are found by their source alone."""
    if managers is not None and not managers:
        return {}
    where, parameters = _filters(site, since, until, manager, step, managers, day="toDate(started_at)")
    if not tracked:
        where += " AND startsWith(source, 'import:')"
    rows = client.query(
        f"""
        SELECT manager, toString(step) AS step,
               uniqExactIf(visit_id, NOT startsWith(source, 'import:')) AS tracked,
               uniqExactIf(visit_id, startsWith(source, 'import:')) AS imported
        FROM step_visits WHERE {where}
        GROUP BY manager, step
        """,
        parameters=parameters,
        settings=cluster.GROUPS_ON_ONE_SHARD,  # a manager's visits are on one shard of a cluster
    ).result_rows
    return {(manager, step_): {"tracked": int(counted) if tracked else None, "imported": int(imported)}
            for manager, step_, counted, imported in rows}


def flags_of(client: Client, site: str, manager: str) -> list[flag_store.StoredFlag]:
    """A manager's flags, theirs and the systemic ones that name them (flag_store.current reads a site's)."""
    rows = query_rows(
        client,
        f"SELECT {', '.join(flag_store.COLUMNS)} FROM flags FINAL WHERE site = {{site:String}} "
        "AND (manager = {manager:String} OR has(managers, {manager:String})) ORDER BY severity, opened_at",
        {"site": site, "manager": manager},
    )
    return [flag_store.StoredFlag(**{**row, "flag_id": str(row["flag_id"]), "managers": tuple(row["managers"]),
                                     "reasons": tuple(row["reasons"])}) for row in rows]


@dataclass(frozen=True)
class LatestRun:
    """The rows of the site's latest analysis run (as `stepwatch stats --json` prints them)."""

    run_at: datetime | None
    window_start: date | None
    window_end: date | None
    rows: list[dict[str, Any]]


def latest_stats(client: Client, site: str, *, manager: str | None = None, step: str | None = None,
                 managers: Collection[str] | None = None) -> LatestRun:
    """The latest analysis run's verdicts (status, flag, minutes lost) for one manager or one step:
    the rows analysis_run.save_stats wrote, read for the few pairs a page shows instead of all."""
    if managers is not None and not managers:
        return LatestRun(None, None, None, [])
    # the latest run's time first (remembered by a page while pair_stats is unchanged): then the
    # read names it, and on a cluster a read for one manager asks that manager's shard alone
    run = latest_run(client, site)
    if run is None:
        return LatestRun(None, None, None, [])
    parameters: dict[str, Any] = {"site": site, "manager": manager or "", "step": step or "",
                                  "managers": sorted(managers or ()), "all": managers is None, "run_at": run.run_at}
    rows = query_rows(
        client,
        """
        SELECT run_at, window_start, window_end, row FROM pair_stats
        WHERE site = {site:String} AND run_at = {run_at:DateTime64(3, 'UTC')}
          AND ({manager:String} = '' OR manager = {manager:String}) AND ({step:String} = '' OR step = {step:String})
          AND ({all:Bool} OR has({managers:Array(String)}, manager))
        ORDER BY manager, step
        """,
        parameters,
    )
    if not rows:
        return LatestRun(None, None, None, [])
    first = rows[0]
    return LatestRun(first["run_at"], first["window_start"], first["window_end"], [json.loads(r["row"]) for r in rows])


def steps_outside(client: Client, site: str, *, managers: Collection[str] | None, min_sessions: int,
                  ) -> tuple[LatestRun, dict[str, dict[str, int]]]:
    """Per step, from the latest analysis run: managers with sessions, with enough sessions
    (>= min_sessions), with a median above the band's max or below its min, and with an open flag.
    Counted in ClickHouse from the stored rows, for the managers given (None = every manager)."""
    if managers is not None and not managers:
        return LatestRun(None, None, None, []), {}
    rows = query_rows(
        client,
        """
        SELECT step, any(run_at) AS run_at, any(window_start) AS window_start, any(window_end) AS window_end,
               count() AS managers, countIf(is_enough) AS enough,
               countIf(is_enough AND has_band AND med > JSONExtractFloat(row, 'band', 'max_ms')) AS above,
               countIf(is_enough AND has_band AND med < JSONExtractFloat(row, 'band', 'min_ms')) AS below,
               countIf(JSONExtractString(row, 'flag_id') != '') AS flagged
        FROM (
            SELECT step, run_at, window_start, window_end, row, JSONExtractFloat(row, 'median_ms') AS med,
                   JSONExtractUInt(row, 'n') >= {min_sessions:UInt32} AS is_enough,
                   JSONHas(row, 'band', 'max_ms') AS has_band
            FROM pair_stats
            WHERE site = {site:String} AND run_at = (SELECT max(run_at) FROM pair_stats WHERE site = {site:String})
              AND ({all:Bool} OR has({managers:Array(String)}, manager))
        )
        GROUP BY step ORDER BY step
        """,
        {"site": site, "min_sessions": min_sessions, "all": managers is None, "managers": sorted(managers or ())},
    )
    if not rows:
        return LatestRun(None, None, None, []), {}
    run = LatestRun(rows[0]["run_at"], rows[0]["window_start"], rows[0]["window_end"], [])
    return run, {r["step"]: {k: int(r[k]) for k in ("managers", "enough", "above", "below", "flagged")}
                 for r in rows}


def flag_histories(client: Client, site: str, flag_ids: Collection[str]) -> dict[str, list[dict[str, Any]]]:
    """Status changes of several flags in one query (flag_store.history reads one flag)."""
    if not flag_ids:
        return {}
    rows = query_rows(
        client,
        "SELECT toString(flag_id) AS flag_id, at, actor, from_status, to_status, reason FROM flag_events "
        "WHERE site = {site:String} AND has({ids:Array(String)}, toString(flag_id)) ORDER BY flag_id, at",
        {"site": site, "ids": sorted(flag_ids)},
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.pop("flag_id"), []).append(row)
    return found


@dataclass(frozen=True)
class Suggestion:
    """A proposed band for one step: P10 / median / P90 of session times, every manager weighted equally."""

    min_ms: int
    reference_ms: int
    max_ms: int
    n: int
    managers: int
    since: date
    until: date


def suggested_band(client: Client, site: str, step: str, since: date, until: date, *, metric: str = "visible",
                   managers: Collection[str] | None = None, min_sessions: int = 20) -> Suggestion | None:
    """The band `stepwatch bands suggest` proposes (analysis.bands.suggest_band, method "balanced"),
    computed in ClickHouse: each session weighs 1 / its manager's sessions, and each quantile is the
    first time whose cumulative weight reaches it (inverted CDF, the same tolerance). Sessions of
    zero time are left out (suggest_band refuses them). None below `min_sessions` sessions.

    One scan and one sort of the period's session times (arraySort), not window functions, which
    took ten times as long at 10 million visits. The 95% interval of the reference that the CLI
    prints comes from 400 resamples of every session: seconds of work at millions of sessions, so
    it stays with the CLI.
    """
    if managers is not None and not managers:
        return None
    where, parameters = _filters(site, since, until, None, step, managers)
    column = METRIC_COLUMNS[metric]
    level = "ts[arrayFirstIndex(c -> c / total >= {q} - 1e-9, cum)]"
    row = client.query(
        f"""
        SELECT length(ts), managers, {level.format(q=0.1)}, {level.format(q=0.5)}, {level.format(q=0.9)}
        FROM (
            SELECT arraySort(groupArray((t, w))) AS ordered, arrayMap(p -> p.1, ordered) AS ts,
                   arrayCumSum(arrayMap(p -> p.2, ordered)) AS cum, cum[-1] AS total, uniqExact(m) AS managers
            FROM (
                SELECT m, arrayJoin(times) AS t, 1 / length(times) AS w
                FROM (SELECT manager AS m, groupArray(t) AS times FROM ({_sessions(column, where)}) WHERE t > 0
                      GROUP BY m)
            )
        )
        {_FINAL_SETTINGS}
        """,
        parameters=parameters,
    ).result_rows[0]
    n, count_managers, p10, p50, p90 = row
    if n < min_sessions:
        return None
    return Suggestion(max(1, int(p10)), max(1, int(p50)), max(1, int(p90)), int(n), int(count_managers), since, until)


@dataclass(frozen=True)
class WeeklySeries:
    """Weekly medians on one step: of each manager named in `apart`, of the others together (key ""),
    and of everyone together (key None); each value is (sessions, median_ms), keyed by (week, who)."""

    cells: dict[tuple[date, str | None], tuple[int, float]]

    def get(self, week: date, who: str | None) -> tuple[int, float | None]:
        n, median = self.cells.get((week, who), (0, None))
        return n, median


def weekly_series(client: Client, site: str, step: str, since: date, until: date, *, managers: Collection[str],
                  apart: Collection[str], metric: str = "visible") -> WeeklySeries:
    """Weekly medians of `managers` on `step` from `since` (a Monday) to `until`: each of `apart`
    alone, the rest together and all together, in one query (GROUPING SETS) over pair_days' arrays,
    so a drawdown page's evidence costs a few hundred arrays whatever the number of sessions."""
    if not managers:
        return WeeklySeries({})
    column = METRIC_COLUMNS[metric]  # chosen by name: nothing from outside enters the SQL
    newest_only, newest = older_refreshes_left_out(client, site, since, until)
    rows = client.query(
        f"""
        SELECT week, who, grouping(who) AS everyone, sum(length(t)) AS n, quantileExactInclusiveArray(0.5)(t) AS median
        FROM (
            SELECT toMonday(day) AS week, if(has({{apart:Array(String)}}, manager), toString(manager), '') AS who,
                   {column} AS t
            FROM pair_days
            WHERE site = {{site:String}} AND step = {{step:String}} AND day >= {{since:Date}} AND day <= {{until:Date}}
              AND has({{managers:Array(String)}}, manager) {newest_only}
        )
        GROUP BY GROUPING SETS ((week, who), (week))
        ORDER BY week, everyone, who
        """,
        parameters={"site": site, "step": step, "since": since, "until": until, "managers": sorted(managers),
                    "apart": sorted(apart), **newest},
    ).result_rows
    return WeeklySeries({(week, None if everyone else who): (int(n), float(median))
                         for week, who, everyone, n, median in rows if n})
