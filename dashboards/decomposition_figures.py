"""What the drawdown page's "where the extra time goes" reads: per manager on one step over a window,
the service sessions that visited it, the visits, and their active, idle and hidden time.

One query on step_visits FINAL (what the `visits` view reads: each visit as its latest report),
aggregated in ClickHouse (on each shard of a cluster: kernel/cluster.py GROUPS_ON_ONE_SHARD): a team
on a step over a fortnight is a few rows whatever the number of visits behind them. The table's
order (site, manager, step, day) finds each manager's visits of the step in one range; every value is
bound as a query parameter. The reports FINAL collapses share the sort key, which holds the visit's
day, so they are in one partition (the month): FINAL need not merge across partitions, which took
a fifth of the time at a million visits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

from clickhouse_connect.driver.client import Client

from analysis.decomposition import Usage
from kernel import cluster


def step_usage(client: Client, site: str, step: str, managers: Collection[str], since: date,
               until: date) -> dict[str, Usage]:
    """Per manager (of `managers`, those with visits) their use of `step` on the days since..until."""
    if not managers:
        return {}
    # step_visits FINAL, as the `visits` view reads it, but named here: on a cluster the whole query,
    # FINAL and grouping, then runs on each shard (a manager's visits are all on one), where through
    # the view every shard sent its visits to the node asked
    rows = client.query(
        "SELECT manager, uniqExact(session_id), count(), sum(active_ms), sum(idle_ms), sum(hidden_ms) "
        "FROM step_visits FINAL WHERE site = {site:String} AND manager IN {managers:Array(String)} "
        "AND step = {step:String} "
        "AND started_at >= {since:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')} "
        "GROUP BY manager SETTINGS do_not_merge_across_partitions_select_final = 1",
        parameters={"site": site, "managers": sorted(managers), "step": step, "since": _midnight(since),
                    "end": _midnight(until + timedelta(days=1))},
        settings=cluster.GROUPS_ON_ONE_SHARD,
    ).result_rows
    return {m: Usage(int(s), int(v), float(a), float(i), float(h)) for m, s, v, a, i, h in rows}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
