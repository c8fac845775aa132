"""Retention reaches the derived tables: every table with a person's visit-level or per-session data has
a TTL of STEPWATCH_RETENTION_DAYS (checked in the DDL), and every table that names a manager is either
such a table or kept on purpose (kernel/migrations/0021_retention.sql says why)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kernel import migrations, storage
from kernel.settings import Settings

# Tables with a manager column that are not time-limited, each for a reason given in 0021_retention.sql
# (coaching names the manager inside its JSON payload and is kept for the same kind of reason as flags).
KEPT = {"flags": "a decision and its history", "managers": "the directory", "team_members": "the directory",
        "users": "the accounts"}


def ddl(client: storage.Client, table: str) -> str:
    return str(client.command("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                              "AND name = {t:String}", parameters={"t": table}))


def test_every_table_with_visit_level_data_has_the_retention_as_its_ttl(client: storage.Client,
                                                                          settings: Settings) -> None:
    for table in ("step_visits", "session_events", "session_steps", "session_days", "pair_days", "session_paths",
                  "pair_stats", "notes", "discovered_paths"):
        assert table in migrations.RETENTION_TABLES, table
        assert f"toIntervalDay({settings.retention_days})" in ddl(client, table), table
    migrations.apply_retention(client, 30)
    for table, column in migrations.RETENTION_TABLES.items():
        text = ddl(client, table)
        assert f"TTL toDateTime({column}) + toIntervalDay(30)" in text, text


def test_every_table_naming_a_manager_expires_or_is_kept_on_purpose(client: storage.Client) -> None:
    named = {r[0] for r in client.query("""
        SELECT DISTINCT c.table FROM system.columns AS c
        INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
        WHERE c.database = currentDatabase() AND c.name IN ('manager', 'managers', 'manager_id')
          AND t.engine LIKE '%MergeTree'""").result_rows}
    undecided = named - set(migrations.RETENTION_TABLES) - set(KEPT)
    assert not undecided, f"decide the retention of {sorted(undecided)} in a migration and here"
    assert set(KEPT) <= named


def test_a_stats_row_the_analysis_stopped_refreshing_expires(client: storage.Client) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=401)
    client.insert("pair_stats", [["crm", old, old.date(), old.date(), "north", "left", "offer", json.dumps({})],
                                 ["crm", now, now.date(), now.date(), "north", "stays", "offer", json.dumps({})]],
                  column_names=["site", "run_at", "window_start", "window_end", "team", "manager", "step", "row"])
    client.command("OPTIMIZE TABLE pair_stats FINAL")
    assert client.query("SELECT manager FROM pair_stats").result_rows == [("stays",)]
