"""Versioned schema migrations: numbered `.sql` files, applied once, in order, and recorded.

A file `NNNN_name.sql` holds one or more statements separated by `;` at the end of a line.
Applied versions are recorded in `schema_migrations`; `apply_pending` runs the rest. Every
statement is written to be idempotent (`IF NOT EXISTS`), so two collectors starting at once
against one ClickHouse server cannot break the schema, at worst both record the version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).parent
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self) -> list[str]:
        without_comments = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*\n", without_comments + "\n") if s.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number: {versions}")
    return found


def applied_versions(client: Client) -> set[int]:
    client.command(_LEDGER)
    return {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}


def apply_pending(client: Client, retention_days: int | None = None) -> list[Migration]:
    """Apply every migration not yet recorded; returns those applied now."""
    done = applied_versions(client)
    applied = []
    for migration in discover():
        if migration.version in done:
            continue
        for statement in migration.statements():
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(migration)
    if retention_days is not None:
        apply_retention(client, retention_days)
    return applied


# Tables whose rows expire after the retention, with the column the age is measured on.
# Every table with visit-level or per-session data; 0021_retention.sql says why each is here or not.
RETENTION_TABLES = {"step_visits": "started_at", "session_events": "at", "session_steps": "day", "session_days": "day",
                    "pair_days": "day", "session_paths": "day", "pair_stats": "run_at", "notes": "created_at"}


def apply_retention(client: Client, days: int) -> None:
    """Make each table's TTL match STEPWATCH_RETENTION_DAYS (a no-op when it already does)."""
    days = int(days)  # DDL takes no parameters: only a validated integer is written in
    for table, column in RETENTION_TABLES.items():
        ddl = client.command(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        )
        if f"toIntervalDay({days})" in str(ddl):  # how ClickHouse normalizes the TTL
            continue
        client.command(f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + toIntervalDay({days})")
