"""Versioned schema migrations: numbered `.sql` files, applied once, in order, and recorded.

A file `NNNN_name.sql` holds one or more statements separated by `;` at the end of a line.
Applied versions are recorded in `schema_migrations`; `apply_pending` runs the rest. Every
statement is written to be idempotent (`IF NOT EXISTS`), so two collectors starting at once
against one ClickHouse server cannot break the schema, at worst both record the version.

On a cluster (STEPWATCH_CLICKHOUSE_CLUSTER) each statement is first rewritten by kernel/cluster.py:
a table becomes a local table and a Distributed one, and what changes tables runs on every node
(without Keeper, through a client per node of STEPWATCH_CLICKHOUSE_NODES; with Keeper, once,
ON CLUSTER), statement by statement, so a backfill (`INSERT ... SELECT`, run once) finds the tables
of every node. The migrations' files are the same for one server and a cluster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from kernel import cluster

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
    on = cluster.of(client)
    if on is None:
        client.command(_LEDGER)
    else:
        for step in on.layout.rewrite(_LEDGER.strip(), set()):
            _run(client, on, step)
    return {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}


def apply_pending(client: Client, retention_days: int | None = None) -> list[Migration]:
    """Apply every migration not yet recorded; returns those applied now."""
    on = cluster.of(client)
    done = applied_versions(client)
    applied = []
    found = discover()
    tables = {name for m in found for name in created_tables(m)} | {"schema_migrations"}
    for migration in found:
        if migration.version in done:
            continue
        for statement in migration.statements():
            if on is None:
                client.command(statement)
                continue
            for step in on.layout.rewrite(statement, tables):
                _run(client, on, step)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(migration)
    if on is not None and applied:
        on.schema_changed()
    if retention_days is not None:
        apply_retention(client, retention_days)
    return applied


_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)


def created_tables(migration: Migration) -> list[str]:
    """The tables a migration creates (CREATE TABLE; not views)."""
    return [m[1] for s in migration.statements() if (m := _CREATE_TABLE.match(s))]


def _run(client: Client, on: cluster.Cluster, step: cluster.Step) -> None:
    if step.scope == "once":
        client.command(step.sql)
        return
    for node in on.node_clients():
        node.command(step.sql)


# Tables whose rows expire after the retention, with the column the age is measured on.
# Every table with visit-level or per-session data; 0021_retention.sql says why each is here or not.
RETENTION_TABLES = {"step_visits": "started_at", "session_events": "at", "session_steps": "day", "session_days": "day",
                    "pair_days": "day", "session_paths": "day", "pair_stats": "run_at", "notes": "created_at",
                    "discovered_paths": "day"}


def apply_retention(client: Client, days: int) -> None:
    """Make each table's TTL match STEPWATCH_RETENTION_DAYS (a no-op when it already does)."""
    days = int(days)  # DDL takes no parameters: only a validated integer is written in
    on = cluster.of(client)
    # on a cluster the TTL is the local tables', on every node (a replica of a replicated table
    # finds it already changed by the first)
    for node, suffix in ([(client, "")] if on is None else [(n, cluster.LOCAL) for n in on.node_clients()]):
        for table, column in RETENTION_TABLES.items():
            ddl = node.command(
                "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                parameters={"t": table + suffix},
            )
            if f"toIntervalDay({days})" in str(ddl):  # how ClickHouse normalizes the TTL
                continue
            node.command(f"ALTER TABLE {table}{suffix} MODIFY TTL toDateTime({column}) + toIntervalDay({days})")
