"""How kernel/cluster.py rewrites the migrations' statements for a cluster, statement by statement (the
cluster itself: tests/test_cluster.py)."""

from __future__ import annotations

from kernel import cluster

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


def test_a_read_of_the_small_tables_alone_goes_to_their_local_tables() -> None:
    small = frozenset({"users", "flags", "courses"})
    read = LAYOUT.first_shard_read
    assert read("SELECT a FROM users FINAL WHERE x = 1", small) == "SELECT a FROM users_local FINAL WHERE x = 1"
    assert read("SELECT a FROM `users` u JOIN flags f USING (id)", small) == (
        "SELECT a FROM users_local u JOIN flags_local f USING (id)")
    assert read("WITH 1 AS one SELECT one FROM (SELECT 1 FROM courses)", small) == (
        "WITH 1 AS one SELECT one FROM (SELECT 1 FROM courses_local)")
    # anything else keeps the Distributed tables
    for other in ("SELECT a FROM users WHERE id IN (SELECT id FROM step_visits)",  # a sharded table
                  "SELECT count() FROM visits",  # a view
                  "SELECT * FROM numbers(3)", "SELECT a FROM users ARRAY JOIN arr",
                  "SELECT extract(day FROM at) FROM users",  # a column after FROM: not taken for a table
                  "WITH t AS (SELECT 1 FROM users) SELECT * FROM t",
                  "INSERT INTO users SELECT * FROM users", "ALTER TABLE users DELETE WHERE 1",
                  "SELECT 1"):
        assert read(other, small) is None, other
    # with Keeper a write may reach another replica of the first shard first
    keeper = cluster.Layout("stepwatch", "sw", keeper=True)
    assert keeper.first_shard_read("SELECT a FROM users", small) is None
