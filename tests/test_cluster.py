"""stepwatch on a cluster of two shards (STEPWATCH_CLICKHOUSE_CLUSTER; no Keeper, so the migrations go
to every node of STEPWATCH_CLICKHOUSE_NODES) gives the embedded engine's answers: every test of
tests/test_server_mode.py runs here again, talking to the second node; and the rows are spread as
kernel/cluster.py says (both shards hold visits, no manager's rows are split, the small tables are
on the first shard)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kernel import cluster, migrations, storage
from kernel.settings import Settings
from tests.test_server_mode import *  # noqa: F403  (the same tests, on the cluster)
from tests.test_server_mode import Backend, Built, demo

del test_two_collectors_ingest_at_once_and_one_runs_the_analysis  # noqa: F821  (one server shows it)

pytestmark = [pytest.mark.xdist_group("cluster_mode"), pytest.mark.slow]


@pytest.fixture(scope="module")
def mode() -> str:
    return "cluster"


def node_rows(backend: Backend, database: str, sql: str) -> list[list[tuple]]:
    """The rows of `sql` on each node by itself (its local tables)."""
    found = []
    for url in backend.servers.urls:
        node = storage.connect(Settings(clickhouse_url=f"{url}/{database}"))
        found.append(node.query(sql).result_rows)
        node.close()
    return found


def test_both_shards_hold_visits_and_no_manager_is_split(backend: Backend, demos: dict[str, Built]) -> None:
    database = storage._database_of(demos["cluster"].settings.clickhouse_url or "", "")
    for table in sorted(cluster.SHARDED):
        per_node = node_rows(backend, database, f"SELECT DISTINCT site, manager FROM {table}{cluster.LOCAL}")
        first, second = ({tuple(r) for r in rows} for rows in per_node)
        assert not first & second, f"{table}: managers on both shards"
        if table in ("step_visits", "session_events", "session_steps", "pair_days", "session_paths", "pair_stats"):
            assert first and second, f"{table}: a shard without rows"
    # the deduplicated visits, on the cluster, are the embedded engine's
    counts = {name: b.client.command("SELECT count() FROM visits WHERE site = {s:String}", parameters={"s": demo.SITE})
              for name, b in demos.items()}
    assert counts["cluster"] == counts["embedded"] > 10_000


def test_the_small_tables_live_on_the_first_shard(backend: Backend, demos: dict[str, Built]) -> None:
    database = storage._database_of(demos["cluster"].settings.clickhouse_url or "", "")
    for table in ("sites", "users", "processes", "bands", "flags", "coaching_events", "audit_log", "schema_migrations"):
        first, second = node_rows(backend, database, f"SELECT count() FROM {table}{cluster.LOCAL}")
        assert first[0][0] > 0 and second[0][0] == 0, table


def test_a_read_of_the_small_tables_alone_asks_only_the_first_shards_node(demos: dict[str, Built]) -> None:
    from kernel import flag_store, small_tables, users

    client = storage.connect(demos["cluster"].settings)  # talks to the second node
    on = cluster.of(client)
    assert on is not None
    asked: list[tuple[int, str]] = []
    for number, node in enumerate(on.node_clients()):
        def query(sql: str, *args: Any, _query: Any = node.query, _number: int = number, **kwargs: Any) -> Any:
            asked.append((_number, sql))
            return _query(sql, *args, **kwargs)
        node.query = query  # type: ignore[method-assign]
    distributed: list[str] = []
    through = client.query

    def query(sql: str, *args: Any, **kwargs: Any) -> Any:
        distributed.append(sql)
        return through(sql, *args, **kwargs)

    client.query = query  # type: ignore[method-assign]
    on.first = None  # found again, through the recording clients
    embedded = demos["embedded"].client
    accounts = [[(u.name, u.role) for u in users.list_users(c)] for c in (client, embedded)]
    assert accounts[0] == accounts[1] and accounts[0]
    flags = [sorted((f.kind, f.step, f.manager, f.status) for f in flag_store.current(c, demo.SITE))
             for c in (client, embedded)]
    assert flags[0] == flags[1] and flags[0]
    reads = [sql for number, sql in asked if "users_local" in sql or "flags_local" in sql]
    assert len(reads) == 2 and all(number == 0 for number, sql in asked if sql in reads)
    # a sharded table still goes through its Distributed table, on the node asked
    asked.clear()
    assert client.command("SELECT count() FROM session_steps") == embedded.command("SELECT count() FROM session_steps")
    assert not [sql for _, sql in asked if "session_steps" in sql]
    # the small tables' versions: every node's local parts, asked of each node by itself
    asked.clear()
    versions = small_tables.versions(client)
    assert {n for n, sql in asked if "system.parts" in sql} == {0, 1}
    assert set(versions) >= {"users", "sites", "pair_stats"}
    client.close()


def test_without_a_node_that_says_it_is_the_first_shard_reads_go_through_the_distributed_tables(
        demos: dict[str, Built]) -> None:
    client = storage.connect(demos["cluster"].settings)
    on = cluster.of(client)
    assert on is not None and on.first_shard_read("SELECT name FROM users") is not None
    elsewhere = cluster.Cluster(cluster.Layout("elsewhere", on.layout.database), on.node_clients)
    assert elsewhere.first_shard_read("SELECT name FROM users") is None
    client.close()


def test_groups_finished_on_each_shard_are_the_embedded_engines(demos: dict[str, Built]) -> None:
    from dashboards import decomposition_figures, figures, flow_figures, overview_figures

    since, until = date(2000, 1, 1), date.today() + timedelta(days=1)
    embedded = demos["embedded"].client
    managers = [m for m, in embedded.query("SELECT DISTINCT manager FROM step_visits").result_rows]
    step = embedded.command("SELECT any(step) FROM step_visits")
    found = {name: (overview_figures.range_cells(b.client, demo.SITE, since, until, managers=None),
                    figures.visit_sources(b.client, demo.SITE, since, until),
                    decomposition_figures.step_usage(b.client, demo.SITE, step, managers, since, until),
                    flow_figures.flow(b.client, demo.SITE, since, until, managers=managers[:5], manager=managers[0]))
             for name, b in demos.items()}
    assert all(len(figure) > 2 for figure in found["embedded"]) and found["embedded"][3]["variants"]
    for name in found:  # /flow's edges and steps come in no order (its page sorts them)
        found[name][3]["edges"].sort(key=repr)
        found[name][3]["steps"].sort(key=repr)
    assert found["cluster"] == found["embedded"]


def test_a_delete_reaches_every_shard(backend: Backend, tmp_path: Path) -> None:
    database = f"d_{uuid.uuid4().hex[:8]}"
    settings = backend.settings(database, tmp_path)
    client = storage.connect(settings)
    migrations.apply_pending(client, settings.retention_days)
    rows = [[demo.SITE, f"m-{n}", "offer", date(2026, 1, 1), f"s-{n}", 1, 1, 1] for n in range(40)]
    client.insert("session_steps", rows, column_names=["site", "manager", "step", "day", "session_id", "visible_ms",
                                                        "active_ms", "wall_ms"])
    assert all(r[0][0] > 0 for r in node_rows(backend, database, "SELECT count() FROM session_steps_local"))
    client.command("DELETE FROM session_steps WHERE site = {s:String}", parameters={"s": demo.SITE})
    assert node_rows(backend, database, "SELECT count() FROM session_steps_local") == [[(0,)], [(0,)]]
    client.close()


def test_erasing_a_manager_reaches_every_shard(backend: Backend, tmp_path: Path) -> None:
    from stepwatch import privacy
    from tests.test_server_mode import new_site, visits

    env, key, client = new_site(backend, tmp_path)
    database = storage._database_of(env["STEPWATCH_CLICKHOUSE_URL"], "")
    managers = [f"m-{n}" for n in range(12)]
    rows = [{**v, "site": "crm", "path": "/", "customer": "", "tracker": "", "source": "test"}
            for n, m in enumerate(managers) for v in visits(5, m, n * 10)]
    for v in rows:
        v.pop("type")
        v["started_at"] = v["started_at"] / 1000
    storage.insert_visits(client, "\n".join(json.dumps(v) for v in rows).encode())
    held = [{m for m, in r} for r in node_rows(backend, database, "SELECT DISTINCT manager FROM step_visits_local")]
    assert held[0] and held[1]
    for gone in (sorted(held[0])[0], sorted(held[1])[0]):  # one manager of each shard
        erased = privacy.erase(client, "crm", gone, actor="test", reason="asked")
        assert erased.rows["step_visits"] == 5
        assert node_rows(backend, database, f"SELECT count() FROM step_visits_local WHERE manager = '{gone}'") == [
            [(0,)], [(0,)]]
    assert client.command("SELECT count() FROM visits") == 50
    client.close()


def test_the_session_headline_is_the_embedded_engines(backend: Backend, tmp_path: Path, client: storage.Client,
                                                      settings: Settings) -> None:
    """The overview's sessions and median service time, merged on the shards: sessions over midnight
    (their start on one shard's day, their end the next day), one never ended, one replayed and one
    whose start and end were stored apart give the same figures as on the embedded engine, and as
    counted by hand."""
    from dashboards import overview_figures
    from tests.dashboard_data import TODAY, served, store_events

    day = TODAY - timedelta(days=3)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    late = datetime(day.year, day.month, day.day, 23, 50, tzinfo=UTC)
    managers = [f"m-{n}" for n in range(14)]
    events = []
    for n, manager in enumerate(managers):
        if n < 6:  # served within the day in 10 minutes
            events += served(manager, f"day-{n}", noon, {})
        else:  # over midnight, served in 40 minutes
            night = served(manager, f"night-{n}", late, {})
            night[-1]["at"] += 30 * 60_000
            events += night
    events += served("m-0", "open", noon + timedelta(hours=1), {}, ended=False)
    apart = served("m-1", "apart", noon + timedelta(hours=2), {})
    built = backend.settings(f"h_{uuid.uuid4().hex[:8]}", tmp_path)
    on_cluster = storage.connect(built)
    migrations.apply_pending(on_cluster, built.retention_days)
    for target, target_settings in ((client, settings), (on_cluster, built)):
        store_events(target, target_settings, "crm", events)
        store_events(target, target_settings, "crm", events)  # replayed
        store_events(target, target_settings, "crm", apart[:1])
        store_events(target, target_settings, "crm", apart[1:])
    held = [{m for m, in r} for r in node_rows(backend, storage._database_of(built.clickhouse_url or "", ""),
                                               "SELECT DISTINCT manager FROM session_days_local")]
    assert held[0] and held[1] and not held[0] & held[1]

    def headline(store: storage.Client, since: date, until: date, who: list[str] | None = None) -> tuple:
        found = overview_figures.headline(store, "crm", since, until, managers=who, teams=None)
        return found["sessions"], found["median_service_ms"]

    asked = [(day, day + timedelta(days=1), None), (day, day, None), (day + timedelta(days=1),) * 2 + (None,),
             (day, day + timedelta(days=1), managers[5:9]), (day, day, [])]
    stores = {"embedded": client, "cluster": on_cluster}
    found = {name: [headline(store, *a) for a in asked] for name, store in stores.items()}
    assert found["cluster"] == found["embedded"] == [
        (16, 2_400_000.0),  # 7 served in 10 minutes (1 stored apart), 8 over midnight in 40, 1 never ended
        (16, 600_000.0),  # the range cuts the nights: their starts count, untimed
        (0, None),  # the nights' ends alone
        (4, 2_400_000.0),  # m-5 in 10 minutes, m-6..m-8 over midnight
        (0, None),
    ]
    on_cluster.close()
