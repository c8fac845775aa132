"""Migrations: unique numbers, applied once, idempotent, retention as configured, schema as reviewed."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kernel import migrations, storage
from kernel.settings import Settings

SNAPSHOT = Path(__file__).parent / "fixtures" / "schema.sql"


def test_migration_files_have_unique_numbered_names() -> None:
    found = migrations.discover()
    assert [m.version for m in found] == sorted({m.version for m in found})
    assert found[0].version == 1
    for path in migrations.MIGRATIONS_DIR.glob("*.sql"):
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", path.name)


def test_migrations_apply_once(settings: Settings) -> None:
    client = storage.connect(settings)
    try:
        first = migrations.apply_pending(client, settings.retention_days)
        assert [m.version for m in first] == [m.version for m in migrations.discover()]
        assert migrations.apply_pending(client, settings.retention_days) == []
        ledger = client.query("SELECT version, count() FROM schema_migrations GROUP BY version").result_rows
        assert all(count == 1 for _, count in ledger)
    finally:
        client.command(f"DROP DATABASE {settings.database} SYNC")
        client.close()


def test_every_statement_is_idempotent(client: storage.Client) -> None:
    for migration in migrations.discover():
        for statement in migration.statements():
            client.command(statement)  # already applied by the fixture: must not fail


def test_retention_setting_becomes_the_ttl(client: storage.Client) -> None:
    migrations.apply_retention(client, 30)
    for table in migrations.RETENTION_TABLES:
        ddl = client.command(f"SHOW CREATE TABLE {table}")
        assert "toIntervalDay(30)" in str(ddl)


def test_visits_view_has_the_columns_of_the_raw_table(client: storage.Client) -> None:
    def columns(table: str) -> dict[str, str]:
        rows = client.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                            "AND table = {t:String}", parameters={"t": table}).result_rows
        return dict(rows)

    raw, view = columns("step_visits"), columns("visits")
    assert set(view) == set(storage.VISIT_COLUMNS)
    assert all(raw[name] == kind for name, kind in view.items())


def schema_text(client: storage.Client, database: str) -> str:
    rows = client.query("SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
                        "ORDER BY name").result_rows
    return "\n\n".join(ddl.replace(f"{database}.", "") + ";" for _, ddl in rows) + "\n"


def test_schema_matches_the_reviewed_snapshot(settings: Settings) -> None:
    """Schema changes show up in review: regenerate with STEPWATCH_UPDATE_SNAPSHOT=1."""
    client = storage.connect(settings)
    try:
        migrations.apply_pending(client, settings.retention_days)
        text = schema_text(client, settings.database)
    finally:
        client.command(f"DROP DATABASE {settings.database} SYNC")
        client.close()
    if os.environ.get("STEPWATCH_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


def test_the_tests_copy_of_a_migrated_database_is_the_same_schema(client: storage.Client, settings: Settings) -> None:
    """The `client` fixture copies a database migrated once (conftest.py): the same schema, every
    migration recorded."""
    assert schema_text(client, settings.database) == SNAPSHOT.read_text()
    assert migrations.applied_versions(client) == {m.version for m in migrations.discover()}
    assert migrations.apply_pending(client, settings.retention_days) == []


def test_a_session_carries_the_attributes_of_its_start_event(client: storage.Client) -> None:
    client.command(
        "INSERT INTO session_events (site, event_id, session_id, action, manager, customer, process, at, attributes) "
        "VALUES ('crm', generateUUIDv4(), 's-1', 'start', 'm-1', 'c', 'sales', '2026-01-05 10:00:00', "
        "map('segment', 'vip', 'channel', 'phone')), "
        "('crm', generateUUIDv4(), 's-1', 'end', 'm-1', 'c', 'sales', '2026-01-05 10:20:00', map()), "
        "('crm', generateUUIDv4(), 's-2', 'start', 'm-1', 'c', 'sales', '2026-01-05 11:00:00', map())")
    rows = client.query("SELECT session_id, attributes FROM service_sessions ORDER BY session_id").result_rows
    assert rows == [("s-1", {"segment": "vip", "channel": "phone"}), ("s-2", {})]
