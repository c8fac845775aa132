"""The read queries behind the flow page: service sessions' paths through the steps, from raw visits.

Expected query pattern: one site, a range of days (30 by default), the managers of one team or one
manager (or every manager the viewer may see). The `visits` view (one row per visit, its latest
report) is read on its key (site, manager, step, day), so only the chosen managers' days are
touched; each session's visits are put in order of `started_at` inside ClickHouse and repeated
visits of one step in a row merged into one stay, as analysis/paths.py defines a path. What comes
back is small whatever the number of sessions:

- `variants`: per manager and path, the sessions and their median time; also per path for all the
  managers together (GROUPING SETS, one pass);
- `transitions`: per manager and edge A -> B, the transitions and the median time from entering A
  to entering B; per step, the stays, their median time, the returns and a return's median time;
  each also for all the managers together.

A session is counted from its visits that started in the range (a session across the first or
last midnight of the range is cut there). Every value is bound as a query parameter; the metric's
column is chosen by name from a fixed list.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel.storage import query_rows

# The time of a visit for each analysis metric (STEPWATCH_ANALYSIS_METRIC), as the analysis reads it.
METRIC_SQL = {"visible": "toUInt64(active_ms) + idle_ms", "active": "toUInt64(active_ms)",
              "wall": "toUInt64(active_ms) + idle_ms + hidden_ms"}

# Per session (manager, session_id): its stays in order, consecutive visits of one step merged.
_SESSIONS = """
    SELECT manager, steps, starts,
           arrayMap(j -> arraySum(arrayFilter((x, r) -> r = j, d0, run)), arrayEnumerate(steps)) AS ms
    FROM (
        SELECT manager,
               arraySort(x -> (x.1, x.2), groupArray((toUnixTimestamp64Milli(started_at), toString(step), {metric})))
                   AS v,
               arrayMap(x -> x.2, v) AS s0,
               arrayMap(x -> x.3, v) AS d0,
               arrayMap(i -> i = 1 OR s0[i] != s0[i - 1], arrayEnumerate(s0)) AS keep,
               arrayCumSum(arrayMap(k -> toUInt32(k), keep)) AS run,
               arrayFilter((x, k) -> k, s0, keep) AS steps,
               arrayFilter((x, k) -> k, arrayMap(x -> x.1, v), keep) AS starts
        FROM visits
        WHERE site = {{site:String}}
          AND started_at >= {{start:DateTime64(3, 'UTC')}} AND started_at < {{end:DateTime64(3, 'UTC')}}
          AND ({{everyone:Bool}} OR manager IN {{managers:Array(String)}})
        GROUP BY manager, session_id
    )
"""


def _parameters(site: str, since: date, until: date, managers: list[str] | None) -> dict[str, Any]:
    return {"site": site, "start": datetime.combine(since, time()),
            "end": datetime.combine(until + timedelta(days=1), time()),
            "everyone": managers is None, "managers": list(managers or [])}


def variants(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
             metric: str = "visible") -> list[dict[str, Any]]:
    """Per manager x path: sessions and the median of their total time (`manager` None: every manager
    of the range together). `managers=None`: every manager of the site; [] nobody."""
    rows = query_rows(
        client,
        f"""
        SELECT manager, steps AS path, count() AS sessions,
               quantileExactInclusive(0.5)(arraySum(ms)) AS median_ms, grouping(manager) AS together
        FROM ({_SESSIONS.format(metric=METRIC_SQL[metric])})
        GROUP BY GROUPING SETS ((manager, path), (path))
        ORDER BY together, manager, sessions DESC, path
        """,
        _parameters(site, since, until, managers),
    )
    return [{"manager": None if r["together"] else r["manager"], "path": tuple(r["path"]),
             "sessions": r["sessions"], "median_ms": r["median_ms"]} for r in rows]


def transitions(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
                metric: str = "visible") -> dict[str, list[dict[str, Any]]]:
    """`edges`: per manager (None: together) x A -> B, transitions and the median time from entering A
    to entering B. `steps`: per manager (None: together) x step, stays, their median time, returns
    (stays on a step the session left earlier) and a return's median time."""
    rows = query_rows(
        client,
        f"""
        SELECT manager, a, b, count() AS n, quantileExactInclusive(0.5)(gap) AS median_gap_ms,
               quantileExactInclusive(0.5)(ms) AS median_ms, countIf(back) AS returns,
               quantileExactInclusiveIf(0.5)(ms, back) AS median_return_ms,
               grouping(manager) AS together, grouping(b) AS per_step
        FROM (
            SELECT manager, steps[i] AS a, if(i < length(steps), steps[i + 1], '') AS b,
                   if(i < length(steps), starts[i + 1] - starts[i], 0) AS gap, ms[i] AS ms,
                   has(arraySlice(steps, 1, i - 1), steps[i]) AS back
            FROM ({_SESSIONS.format(metric=METRIC_SQL[metric])})
            ARRAY JOIN arrayEnumerate(steps) AS i
        )
        GROUP BY GROUPING SETS ((manager, a, b), (a, b), (manager, a), (a))
        """,
        _parameters(site, since, until, managers),
    )
    edges, steps = [], []
    for r in rows:
        who = None if r["together"] else r["manager"]
        if r["per_step"]:
            steps.append({"manager": who, "step": r["a"], "stays": r["n"], "median_ms": r["median_ms"],
                          "returns": r["returns"],
                          "median_return_ms": r["median_return_ms"] if r["returns"] else None})
        elif r["b"]:  # '' is the session's end: not an edge
            edges.append({"manager": who, "source": r["a"], "target": r["b"], "transitions": r["n"],
                          "median_ms": r["median_gap_ms"]})
    return {"edges": edges, "steps": steps}
