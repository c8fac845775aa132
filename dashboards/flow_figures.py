"""The read queries behind the flow page: service sessions' paths through the steps.

Expected query pattern: one site, a range of days (30 by default), the managers of one team or one
manager (or every manager the viewer may see). Each session's path comes from `session_paths`
(migration 0024, kept by the analysis's refresh, storage.refresh_session_steps): per day its stays
in order, repeated visits of one step in a row merged into one stay, as analysis/paths.py defines a
path. The table is ordered by manager, then day, so only the chosen managers' days are read, one row
per session and day instead of every visit; figures are as of the last refresh, like the other
pre-aggregates'. What comes back is small whatever the number of sessions, in one query (`flow`,
GROUPING SETS in one pass): per manager and path, the sessions and their median time; per manager
and edge A -> B, the transitions and the median time from entering A to entering B; per manager and
step, the stays, their median time, the returns and a return's median time; each also for the
managers together.

A session is counted from its visits that started in the range (a session across the first or
last midnight of the range is cut there). Every value is bound as a query parameter; the metric's
column is chosen by name from a fixed list.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel.storage import older_refreshes_left_out, query_rows

# Each stay's time for each analysis metric (STEPWATCH_ANALYSIS_METRIC): a column of session_paths, by name.
METRIC_COLUMNS = {"visible": "visible_ms", "active": "active_ms", "wall": "wall_ms"}

# Per session (manager, session_id): its stays in order. session_paths holds them per day, already
# merged; a session over midnight has a row per day, joined here in day order, and a stay cut by
# midnight (the same step last before it and first after) merged once more: `keep` marks the first
# stay of each run of one step, where arraySplit cuts the times to sum them.
_SESSIONS = """
    SELECT manager, arrayFilter((x, k) -> k, s0, keep) AS steps, arrayFilter((x, k) -> k, t0, keep) AS starts,
           arrayMap(x -> arraySum(x), arraySplit((x, k) -> k, d0, keep)) AS ms
    FROM (
        SELECT manager, arraySort(x -> x.1, groupArray((day, steps, starts, {column}))) AS parts,
               arrayFlatten(arrayMap(x -> x.2, parts)) AS s0, arrayFlatten(arrayMap(x -> x.3, parts)) AS t0,
               arrayFlatten(arrayMap(x -> x.4, parts)) AS d0,
               arrayMap((s, p) -> s != p, s0, arrayPushFront(arrayPopBack(s0), '')) AS keep
        FROM session_paths
        WHERE site = {{site:String}} AND day >= {{since:Date}} AND day <= {{until:Date}}
          AND ({{everyone:Bool}} OR manager IN {{managers:Array(String)}}) {newest_only}
        GROUP BY manager, session_id
    )
"""


def _parameters(site: str, since: date, until: date, managers: list[str] | None) -> dict[str, Any]:
    return {"site": site, "since": since, "until": until, "everyone": managers is None,
            "managers": list(managers or [])}


def flow(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
         metric: str = "visible", per_manager: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Everything the flow page reads, in one pass over the sessions (`manager` None: the managers together;
    `managers=None`: every manager of the site, [] nobody):

    variants  per manager x path: sessions and the median of their total time
    edges     per manager x A -> B: transitions and the median time from entering A to entering B
    steps     per manager x step: stays, their median time, returns (stays on a step the session left
              earlier) and a return's median time

    Variants come per manager and together; edges and steps together (a group's map), or with
    `per_manager` per manager, plus each step's figures together (one manager's map against their
    team): two grouping sets fewer than both, a sixth of the query's CPU.

    Each session is unrolled into one row for itself (i = 0, carrying its path) and one per stay; the
    grouping sets that do not concern a row put it in a group with an empty step or path, left out here.
    """
    if managers == []:
        return {"variants": [], "edges": [], "steps": []}
    newest_only, newest = older_refreshes_left_out(client, site, since, until, "session_paths")
    sets = ("(manager, path), (manager, a, b), (manager, a), (a)" if per_manager
            else "(manager, path), (path), (a, b), (a)")  # fixed texts: nothing from outside enters the SQL
    rows = query_rows(
        client,
        f"""
        SELECT manager, a, b, path, countIf(i > 0) AS n, countIf(i = 0) AS sessions,
               quantileExactInclusiveIf(0.5)(total, i = 0) AS median_total_ms,
               quantileExactInclusiveIf(0.5)(gap, i > 0) AS median_gap_ms,
               quantileExactInclusiveIf(0.5)(stay_ms, i > 0) AS median_ms, countIf(back) AS returns,
               quantileExactInclusiveIf(0.5)(stay_ms, back) AS median_return_ms,
               grouping(manager) AS together, grouping(b) AS per_step, grouping(path) AS not_path
        FROM (
            SELECT manager, i,
                   if(i = 0, steps, []) AS path, if(i = 0, arraySum(ms), 0) AS total,
                   if(i = 0, '', steps[i]) AS a, if(i > 0 AND i < length(steps), steps[i + 1], '') AS b,
                   if(i > 0 AND i < length(steps), starts[i + 1] - starts[i], 0) AS gap,
                   if(i = 0, 0, ms[i]) AS stay_ms,
                   i > 0 AND has(arraySlice(steps, 1, i - 1), steps[i]) AS back
            FROM ({_SESSIONS.format(column=METRIC_COLUMNS[metric], newest_only=newest_only)})
            ARRAY JOIN arrayConcat([0], arrayEnumerate(steps)) AS i
        )
        GROUP BY GROUPING SETS ({sets})
        """,
        {**_parameters(site, since, until, managers), **newest},
    )
    variants, edges, steps = [], [], []
    for r in rows:
        who = None if r["together"] else r["manager"]
        if not r["not_path"]:
            if r["path"]:
                variants.append({"manager": who, "path": tuple(r["path"]), "sessions": r["sessions"],
                                 "median_ms": r["median_total_ms"]})
        elif not r["a"]:
            continue  # the sessions' own rows, in the per-step and per-edge sets
        elif r["per_step"]:
            steps.append({"manager": who, "step": r["a"], "stays": r["n"], "median_ms": r["median_ms"],
                          "returns": r["returns"],
                          "median_return_ms": r["median_return_ms"] if r["returns"] else None})
        elif r["b"]:  # '' is the session's end: not an edge
            edges.append({"manager": who, "source": r["a"], "target": r["b"], "transitions": r["n"],
                          "median_ms": r["median_gap_ms"]})
    variants.sort(key=lambda v: (v["manager"] is None, v["manager"] or "", -v["sessions"], v["path"]))
    return {"variants": variants, "edges": edges, "steps": steps}
