"""stepwatch on a cluster of two shards (STEPWATCH_CLICKHOUSE_CLUSTER; no Keeper, so the migrations go
to every node of STEPWATCH_CLICKHOUSE_NODES) gives the embedded engine's answers: every test of
tests/test_server_mode.py runs here again, talking to the second node; and the rows are spread as
kernel/cluster.py says (both shards hold visits, no manager's rows are split, the small tables are
on the first shard)."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from kernel import cluster, migrations, storage
from kernel.settings import Settings
from tests.test_server_mode import *  # noqa: F403  (the same tests, on the cluster)
from tests.test_server_mode import Backend, Built, demo

del test_two_collectors_ingest_at_once_and_one_runs_the_analysis  # noqa: F821  (one server shows it)

pytestmark = pytest.mark.xdist_group("cluster_mode")


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


# -- the rewriting itself, statement by statement ------------------------------------------------------------

LAYOUT = cluster.Layout("stepwatch", "sw")


def test_a_table_becomes_a_local_table_and_a_distributed_one() -> None:
    tables: set[str] = set()
    steps = LAYOUT.rewrite("CREATE TABLE IF NOT EXISTS step_visits\n(site String, manager String)\n"
                           "ENGINE = ReplacingMergeTree(seq)\nORDER BY (site, manager)", tables)
    assert tables == {"step_visits"}
    assert [s.scope for s in steps] == ["each", "each"]
    assert steps[0].sql.startswith("CREATE TABLE IF NOT EXISTS step_visits_local\n(site String")
    assert steps[1].sql == ("CREATE TABLE IF NOT EXISTS step_visits AS sw.step_visits_local ENGINE = "
                            "Distributed(stepwatch, sw, step_visits_local, cityHash64(site, manager))")
    small = LAYOUT.rewrite("CREATE TABLE sites (site String) ENGINE = MergeTree ORDER BY site", tables)
    assert small[1].sql.endswith("Distributed(stepwatch, sw, sites_local, 0)")


def test_what_a_distributed_table_cannot_run_goes_to_the_local_tables() -> None:
    tables = {"sites", "pair_days", "session_steps"}
    added = LAYOUT.rewrite("ALTER TABLE sites ADD COLUMN IF NOT EXISTS x String", tables)
    assert [(s.scope, s.sql) for s in added] == [
        ("each", "ALTER TABLE sites_local ADD COLUMN IF NOT EXISTS x String"),
        ("each", "ALTER TABLE sites ADD COLUMN IF NOT EXISTS x String")]
    updated = LAYOUT.rewrite("ALTER TABLE sites UPDATE x = '' WHERE 1 SETTINGS mutations_sync = 2", tables)
    assert [s.sql for s in updated] == ["ALTER TABLE sites_local UPDATE x = '' WHERE 1 SETTINGS mutations_sync = 2"]
    assert [s.sql for s in LAYOUT.rewrite("TRUNCATE TABLE pair_days", tables)] == ["TRUNCATE TABLE pair_days_local"]
    assert [s.sql for s in LAYOUT.rewrite("DROP TABLE IF EXISTS pair_days", tables)] == [
        "DROP TABLE IF EXISTS pair_days", "DROP TABLE IF EXISTS pair_days_local"]
    assert [(s.scope, s.sql) for s in LAYOUT.rewrite("INSERT INTO pair_days SELECT * FROM session_steps", tables)] == [
        ("once", "INSERT INTO pair_days SELECT * FROM session_steps")]
    [mv] = LAYOUT.rewrite("CREATE MATERIALIZED VIEW IF NOT EXISTS pair_days_mv TO pair_days AS\nSELECT site FROM "
                          "session_steps GROUP BY site", tables)
    assert mv.sql == ("CREATE MATERIALIZED VIEW IF NOT EXISTS pair_days_mv TO pair_days_local AS\nSELECT site FROM "
                      "session_steps_local GROUP BY site")
    assert LAYOUT.mutation("DELETE FROM `session_steps` WHERE site = {s:String}") == (
        "DELETE FROM session_steps_local WHERE site = {s:String}")
    assert LAYOUT.mutation("ALTER TABLE `flags` DELETE WHERE 1") == "ALTER TABLE flags_local DELETE WHERE 1"
    assert LAYOUT.mutation("SELECT 1") is None
    assert LAYOUT.mutation("TRUNCATE TABLE IF EXISTS x_local ON CLUSTER stepwatch") is None
    assert LAYOUT.mutation("ALTER TABLE flags ADD COLUMN x String") is None


def test_with_keeper_tables_are_replicated_and_ddl_runs_on_cluster() -> None:
    keeper = cluster.Layout("stepwatch", "sw", keeper=True)
    tables: set[str] = set()
    local, distributed = keeper.rewrite("CREATE TABLE IF NOT EXISTS flags (site String) ENGINE = "
                                        "ReplacingMergeTree(version) ORDER BY site", tables)
    assert (local.scope, distributed.scope) == ("once", "once")
    assert local.sql == ("CREATE TABLE IF NOT EXISTS flags_local ON CLUSTER stepwatch (site String) ENGINE = "
                         "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sw/flags_local', '{replica}', "
                         "version) ORDER BY site")
    assert distributed.sql.startswith("CREATE TABLE IF NOT EXISTS flags ON CLUSTER stepwatch AS sw.flags_local")
    [alter] = keeper.rewrite("ALTER TABLE flags DELETE WHERE 1", tables)
    assert alter.sql == "ALTER TABLE flags_local ON CLUSTER stepwatch DELETE WHERE 1"


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
