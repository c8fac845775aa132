"""How the pages' figures are read, for a cluster's sake (kernel/cluster.py): what reads only small
tables is a query of its own (on a cluster it asks the first shard alone), and a read of the
latest analysis run names the run, which a page remembers (a read for one manager then asks one
shard). The figures themselves are tested with their pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboards import figures, overview_figures
from kernel import cluster, small_tables, storage
from tests.dashboard_data import TODAY, make_flag, stats_row, store_pair_stats

SMALL = frozenset({"flags", "flag_events", "coaching_events", "coaching_evaluations"})  # of the small tables


@pytest.fixture
def sent(client: storage.Client, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement `client` runs from now on."""
    found: list[str] = []
    query = client.query

    def recorded(sql: str, *args: Any, **kwargs: Any) -> Any:
        found.append(sql)
        return query(sql, *args, **kwargs)

    monkeypatch.setattr(client, "query", recorded)
    return found


def test_the_overviews_small_table_figures_are_queries_of_their_own(client: storage.Client, site: Any,
                                                                    sent: list[str]) -> None:
    make_flag(client, site.name)
    since, until = TODAY - timedelta(days=7), TODAY - timedelta(days=1)
    head = overview_figures.headline(client, site.name, since, until, managers=None, teams=None)
    taken = overview_figures.decisions(client, site.name, datetime.now(UTC), until, managers=None, teams=None)
    assert head["active_flags"] == 1 and taken["drawdowns"] == 1
    layout = cluster.Layout("stepwatch", "sw")
    first_shard = [sql for sql in sent if layout.first_shard_read(sql, SMALL)]
    assert len(sent) == 4 and len(first_shard) == 2  # headline's and decisions' flags, on the first shard alone


def test_the_latest_runs_rows_are_one_query_once_the_page_remembers_the_run(client: storage.Client, site: Any,
                                                                           sent: list[str]) -> None:
    since, until = TODAY - timedelta(days=28), TODAY - timedelta(days=1)
    store_pair_stats(client, site.name, [stats_row(site.name, "north", "m-1", "offer", 90_000)], since, until)
    store_pair_stats(client, site.name, [stats_row(site.name, "north", m, "offer", 100_000) for m in ("m-1", "m-2")],
                     since, until)
    token = small_tables.begin(small_tables.Memory(), small_tables.versions(client))
    try:
        figures.latest_stats(client, site.name, manager="m-2")  # remembers the run
        sent.clear()
        latest = figures.latest_stats(client, site.name, manager="m-1")
    finally:
        small_tables.end(token)
    assert [(r["manager"], r["median_ms"]) for r in latest.rows] == [("m-1", 100_000)]
    assert len(sent) == 1 and "max(run_at)" not in sent[0]


def test_a_page_checks_the_newest_refresh_of_each_day_once_until_the_next_refresh(client: storage.Client, site: Any,
                                                                               sent: list[str]) -> None:
    day = TODAY - timedelta(days=2)

    def refresh(at: datetime) -> None:  # a refresh's rows of one day, its older rows not yet deleted
        client.insert("pair_days", [[site.name, day, 1, "m-1", "offer", [60_000], [60_000], [60_000], at]],
                      column_names=["site", "day", "pair", "manager", "step", "visible_ms", "active_ms", "wall_ms",
                                    "computed_at"])

    def check() -> dict[str, Any]:
        token = small_tables.begin(memory, small_tables.versions(client))
        try:
            sent.clear()
            first = storage.older_refreshes_left_out(client, site.name, day, TODAY)[1]
            again = storage.older_refreshes_left_out(client, site.name, day, TODAY)[1]
            assert again == first
            return first | {"queries": len([sql for sql in sent if "max(computed_at)" in sql])}
        finally:
            small_tables.end(token)

    memory = small_tables.Memory()
    early = datetime(2026, 1, 1)  # read back without its zone
    refresh(early)
    refresh(early + timedelta(hours=1))
    assert check() == {"days": [day], "newest": [early + timedelta(hours=1)], "queries": 1}
    assert check()["queries"] == 0  # the next page: nothing refreshed since
    refresh(early + timedelta(hours=2))
    assert check() == {"days": [day], "newest": [early + timedelta(hours=2)], "queries": 1}
