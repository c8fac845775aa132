"""The read queries behind the flow page: service sessions' paths through the steps.

Expected query pattern: one site, a range of days (30 by default), the managers of one team or one
manager (or every manager the viewer may see). Each session's path comes from `session_paths`
(migration 0024, kept by the analysis's refresh, storage.refresh_session_steps): per day its stays
in order, repeated visits of one step in a row merged into one stay, as analysis/paths.py defines a
path. The table is ordered by manager, then day, so only the chosen managers' days are read, one row
per session and day instead of every visit; figures are as of the last refresh, like the other
pre-aggregates'. What comes back is small whatever the number of sessions, in two queries (`flow`,
GROUPING SETS): per manager and path, the sessions and their median time; per manager and edge
A -> B, the transitions and the median time from entering A to entering B; per manager and step,
the stays, their median time, the returns and a return's median time; each also for the managers
together.

A session is counted from its visits that started in the range (a session across the first or
last midnight of the range is cut there). Every value is bound as a query parameter; the metric's
column is chosen by name from a fixed list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import cluster
from kernel.storage import older_refreshes_left_out, query_rows

# Each stay's time for each analysis metric (STEPWATCH_ANALYSIS_METRIC): a column of session_paths, by name.
METRIC_COLUMNS = {"visible": "visible_ms", "active": "active_ms", "wall": "wall_ms"}

# The rows of the range: one site, its days, the managers read (every one, or a list), each day as its
# newest refresh (`newest_only`: storage.older_refreshes_left_out).
_WHERE = """site = {{site:String}} AND day >= {{since:Date}} AND day <= {{until:Date}}
            AND ({{everyone:Bool}} OR manager IN {{managers:Array(String)}}) {newest_only}"""

# Where the sessions come from. Nearly every session has one row in the range, its stays as they are
# (`_ONE_ROW`: the table itself, so that on a cluster each shard takes its stays apart and groups them,
# and only the groups' states travel; read through a subquery, every session's arrays went to the node
# asked, which did all the work: 2 shards at 10 million visits, a team's stays 93 -> 80 ms, 153 -> 131
# ms of CPU). A session with more (over midnight, or back on a later day; `joined`: their ids, found
# first) has its rows put together in day order (`_JOINED`), and a stay cut by midnight (the same step
# last before it and first after) merged once more: `keep` marks the first stay of each run of one
# step, where arraySplit cuts the times to sum them. Grouping every session to find the few took 140
# of the 370 ms of CPU of a team's 30 days at 10 million visits. Each source is grouped on its own
# (`_VARIANT_STATES`, `_STAY_STATES`), and the two are merged: the same values, so the same medians.
_ONE_ROW = {"source": "session_paths", "steps": "CAST(steps, 'Array(String)')", "ms": "{column}",
            "where": "WHERE {where} AND session_id NOT IN {{joined:Array(String)}}"}
_JOINED = {"source": """(
        SELECT manager, arrayFilter((x, k) -> k, s0, keep) AS steps, arrayFilter((x, k) -> k, t0, keep) AS starts,
               arrayMap(x -> arraySum(x), arraySplit((x, k) -> k, d0, keep)) AS ms
        FROM (
            SELECT manager,
                   arraySort(x -> x.1, groupArray((day, CAST(steps, 'Array(String)'), starts, {column}))) AS parts,
                   arrayFlatten(arrayMap(x -> x.2, parts)) AS s0, arrayFlatten(arrayMap(x -> x.3, parts)) AS t0,
                   arrayFlatten(arrayMap(x -> x.4, parts)) AS d0,
                   arrayMap((s, p) -> s != p, s0, arrayPushFront(arrayPopBack(s0), '')) AS keep
            FROM session_paths
            WHERE {where} AND session_id IN {{joined:Array(String)}}
            GROUP BY manager, session_id
        ))""", "steps": "steps", "ms": "ms", "where": ""}


# Per manager x path (`sets`: with the managers together, or without for one manager's page).
_VARIANT_STATES = """
    SELECT manager, {steps} AS path, count() AS sessions, quantileExactInclusiveState(0.5)(arraySum({ms})) AS times
    FROM {source}
    {where}
    GROUP BY manager, path
"""
_VARIANTS = """
    SELECT manager, path, sum(sessions) AS sessions, quantileExactInclusiveMerge(0.5)(times) AS median_ms,
           grouping(manager) AS together
    FROM ({one_row} UNION ALL {joined})
    GROUP BY GROUPING SETS ({sets})
"""
_VARIANT_SETS = {False: "(manager, path), (path)", True: "(manager, path)"}

# Per stay: its step `a`, the next `b` ('' at the end), the time from entering a to entering b, its own
# time, and whether the session had left that step before (`seen` > 1: arrayEnumerateUniq counts the
# step's stays so far). `mine`: the stay is the chosen manager's (every stay when no one is chosen);
# the medians of the edges and stays are sorted for those only, a return's for every stay (`sets`:
# a group's map, or one manager's and the steps together, where `together` marks the latter).
_STAY_STATES = """
    SELECT ({{own:String}} = '' OR manager = {{own:String}}) AS mine, a, b, count() AS n,
           quantileExactInclusiveStateIf(0.5)(gap, mine) AS gaps,
           quantileExactInclusiveStateIf(0.5)(stay_ms, mine) AS stays,
           countIf(seen > 1) AS returns, quantileExactInclusiveStateIf(0.5)(stay_ms, seen > 1) AS returned
    FROM {source}
    ARRAY JOIN {steps} AS a, arrayPushBack(arrayPopFront({steps}), '') AS b,
               arrayPushBack(arrayPopFront(arrayDifference(starts)), 0) AS gap, {ms} AS stay_ms,
               arrayEnumerateUniq({steps}) AS seen
    {where}
    GROUP BY mine, a, b
"""
_STAYS = """
    SELECT a, b, mine, grouping(mine) AS together, grouping(b) AS per_step, sum(n) AS n,
           quantileExactInclusiveMerge(0.5)(gaps) AS median_gap_ms,
           quantileExactInclusiveMerge(0.5)(stays) AS median_ms,
           sum(returns) AS returns, quantileExactInclusiveMerge(0.5)(returned) AS median_return_ms
    FROM ({one_row} UNION ALL {joined})
    GROUP BY GROUPING SETS ({sets})
"""
_STAY_SETS = {False: "(mine, a, b), (mine, a)", True: "(mine, a, b), (mine, a), (a)"}


def _grouped(states: str, column: str, where: str) -> dict[str, str]:
    """`states` over each source of the sessions: `one_row` and `joined`, ready for _VARIANTS or _STAYS."""
    return {name: states.format(**{key: value.format(column=column, where=where) for key, value in source.items()})
            for name, source in (("one_row", _ONE_ROW), ("joined", _JOINED))}


def _parameters(site: str, since: date, until: date, managers: list[str] | None) -> dict[str, Any]:
    return {"site": site, "since": since, "until": until, "everyone": managers is None,
            "managers": list(managers or [])}


@dataclass(frozen=True)
class Read:
    """What both of a range's queries read: the filter of its rows, the metric's column, and the
    parameters, with the ids of the sessions with several rows found first (`joined`)."""

    where: str
    column: str
    parameters: dict[str, Any]


def read(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
         metric: str = "visible", manager: str | None = None) -> Read | None:
    """The sessions of a range for `variants` and `stays` (None when `managers` is [], nobody)."""
    if managers == []:
        return None
    newest_only, newest = older_refreshes_left_out(client, site, since, until, "session_paths")
    parameters = {**_parameters(site, since, until, managers), **newest, "own": manager or ""}
    where = _WHERE.format(newest_only=newest_only)
    # by manager too: a session is one manager's, so on a cluster each shard finds its own
    parameters["joined"] = [session for session, in client.query(
        f"SELECT session_id FROM session_paths WHERE {where} GROUP BY manager, session_id HAVING count() > 1",
        parameters=parameters, settings=cluster.GROUPS_ON_ONE_SHARD).result_rows]
    return Read(where, METRIC_COLUMNS[metric], parameters)


def variants(client: Client, found: Read | None, manager: str | None = None) -> list[dict[str, Any]]:
    """Per manager x path: sessions and the median of their total time; together too unless `manager`."""
    if found is None:
        return []
    rows = query_rows(client, _VARIANTS.format(**_grouped(_VARIANT_STATES, found.column, found.where),
                                               sets=_VARIANT_SETS[bool(manager)]), found.parameters)
    found_variants = [{"manager": None if r["together"] else r["manager"], "path": tuple(r["path"]),
                       "sessions": r["sessions"], "median_ms": r["median_ms"]} for r in rows if r["path"]]
    found_variants.sort(key=lambda v: (v["manager"] is None, v["manager"] or "", -v["sessions"], v["path"]))
    return found_variants


def stays(client: Client, found: Read | None, manager: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per A -> B the transitions and their median time (`edges`), per step its stays and returns
    (`steps`): together, or with `manager` that manager's alone beside each step's together."""
    edges: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    if found is None:
        return {"edges": edges, "steps": steps}
    for r in query_rows(client, _STAYS.format(**_grouped(_STAY_STATES, found.column, found.where),
                                              sets=_STAY_SETS[bool(manager)]), found.parameters):
        if not r["a"] or not (r["together"] or r["mine"]):
            continue  # the session's end, or a teammate's own figures (not read)
        who = manager if manager and not r["together"] else None
        # with `manager`, the medians are the manager's alone: a step's together has none
        median_ms = r["median_ms"] if who == manager else None
        if r["per_step"]:
            steps.append({"manager": who, "step": r["a"], "stays": r["n"], "median_ms": median_ms,
                          "returns": r["returns"],
                          "median_return_ms": r["median_return_ms"] if r["returns"] else None})
        elif r["b"]:  # '' is the session's end: not an edge
            edges.append({"manager": who, "source": r["a"], "target": r["b"], "transitions": r["n"],
                          "median_ms": r["median_gap_ms"]})
    return {"edges": edges, "steps": steps}


def flow(client: Client, site: str, since: date, until: date, *, managers: list[str] | None,
         metric: str = "visible", manager: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Everything the flow page reads (`managers=None`: every manager of the site, [] nobody; a row's
    `manager` None: the managers read together):

    variants  per manager x path: sessions and the median of their total time
    edges     per A -> B: transitions and the median time from entering A to entering B
    steps     per step: stays, their median time, returns (stays on a step the session left earlier)
              and a return's median time

    Variants come per manager, and together unless `manager` is given. Edges and steps come together
    (a group's map), or with `manager` (one of `managers`) for that manager alone, plus each step's
    stays, returns and return time together (one manager's map against their team: the medians are
    sorted for that manager's stays only, not for every teammate's). Two reads of the sessions, one
    row per session for the variants and one per stay for the edges and steps: each grouping set then
    sees only its own rows (one read of a row per session and per stay, every row in every set, took
    twice the CPU). They are independent: the page runs them at once (`read`, then `variants` and
    `stays`; 2 shards at 10 million visits: 190 -> 172 ms at p50 for a team's 30 days); this runs
    them one after the other.
    """
    found = read(client, site, since, until, managers=managers, metric=metric, manager=manager)
    return {"variants": variants(client, found, manager), **stays(client, found, manager)}
