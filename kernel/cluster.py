"""stepwatch on a ClickHouse cluster (STEPWATCH_CLICKHOUSE_CLUSTER): which table lives where, and the
migrations' statements rewritten for it.

Every table a migration creates becomes two on every node: `<name>_local`, the table of the
migration (its engine, its ORDER BY), and `<name>`, a Distributed table over the cluster's shards.
Every query of stepwatch names `<name>` and is unchanged: ClickHouse sends it to the shards and
merges their answers.

- The tables that grow with traffic (SHARDED) are spread over the shards by
  cityHash64(site, manager): every row of one manager on one site lives on one shard, so FINAL
  (deduplication of a visit's reports), the materialized views (session_days, pair_days) and the
  per-manager reads see all of a manager's rows on one shard, and a batch replayed from the spool
  lands on the shard that already holds it.
- The small tables (sites, users, processes, bands, flags, coaching, audit, the ledger) have the
  sharding key 0: their rows all live on the first shard, written through the same Distributed
  tables from any node. No Keeper is needed, a node added later holds no copy to bring up to date,
  and a read of them is a few rows from one shard. With Keeper their `_local` tables are
  ReplicatedMergeTree like the rest, so the first shard's replicas keep them (docs/deploy.md).
  Without Keeper a SELECT that reads only small tables (`Layout.first_shard_read`) goes straight to
  the first node's `_local` tables: a Distributed table would ask every shard, about 6 ms more per
  query, for rows only the first one holds. It sees what the Distributed table would: a write
  through it is acknowledged once the first shard holds it (distributed_foreground_insert).

Statements a Distributed table cannot run (mutations, TRUNCATE, TTL changes) go to the `_local`
tables of every node of STEPWATCH_CLICKHOUSE_NODES; a migration's DDL runs there too, or, with
Keeper, once `ON CLUSTER`. Queries run with `distributed_product_mode = 'global'` (a subquery or
JOIN on a Distributed table is computed once and sent to the shards: the same answer as on one
server) and `distributed_foreground_insert = 1` (an insert is acknowledged once the shards hold it,
so the collector's exactly-once holds); an `INSERT ... SELECT` runs once, on the node asked.

This module only writes SQL; kernel/storage.py connects and kernel/migrations applies.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Tables whose rows grow with traffic, each with `site` and `manager` columns.
SHARDED = frozenset({"step_visits", "session_events", "session_steps", "session_days", "pair_days",
                     "session_paths", "pair_stats"})
SHARDING_KEY = "cityHash64(site, manager)"
FIRST_SHARD = "0"  # the small tables' sharding key: every row on the first shard
LOCAL = "_local"

# What every query on a cluster runs with (see the module's docstring).
# parallel_distributed_insert_select = 0: an INSERT ... SELECT between two Distributed tables is not
# run on each shard with its subqueries left unqualified there (ClickHouse 26.9 then fails), but once,
# as on one server.
# optimize_skip_unused_shards: a query for one manager (WHERE site = .. AND manager = ..) asks only
# that manager's shard; optimize_distributed_group_by_sharding_key: a GROUP BY of site and manager
# is finished on each shard (no manager's rows are on two), the node asked only puts the groups
# together. Both give the same rows as without (tests/test_cluster.py), in less time.
QUERY_SETTINGS = {"distributed_product_mode": "global", "distributed_foreground_insert": 1,
                  "parallel_distributed_insert_select": 0, "optimize_skip_unused_shards": 1,
                  "optimize_distributed_group_by_sharding_key": 1}

# For a query whose every group holds rows of one manager on one site (GROUP BY pair, manager, ...
# with one site): each shard's groups are final, so the node asked only puts them in order instead
# of merging every group's state (the quantiles' states are all their values). It is no setting of
# the one-server engine's tables (a MergeTree ignores it). Not for a median of a team or a site.
GROUPS_ON_ONE_SHARD = {"distributed_group_by_no_merge": 2}

_NAME = r"`?(\w+)`?"
_HEAD = re.compile(
    r"^\s*(?P<verb>CREATE\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW|OR\s+REPLACE\s+VIEW)|ALTER\s+TABLE|TRUNCATE\s+TABLE|TRUNCATE"
    r"|DROP\s+(?:TABLE|VIEW)|DELETE\s+FROM|OPTIMIZE\s+TABLE|INSERT\s+INTO)"
    rf"(?P<exists>\s+IF\s+(?:NOT\s+)?EXISTS)?\s+{_NAME}", re.IGNORECASE)
_ENGINE = re.compile(r"ENGINE\s*=\s*(\w*)MergeTree\b(?:\s*\(([^)]*)\))?", re.IGNORECASE)
_SOURCE = re.compile(r"\b(FROM|JOIN)(\s+)(`?)([\w.]+)\3(?!\s*\()", re.IGNORECASE)
_READ = re.compile(r"^\s*(\(\s*)*(SELECT|WITH)\b", re.IGNORECASE)
_COLUMN_CHANGE = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def identifier(name: str, what: str = "name") -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a valid ClickHouse {what}: {name!r}")
    return name


@dataclass(frozen=True)
class Step:
    """One statement of a rewritten migration: run on every node (`each`) or once (`once`)."""

    scope: str
    sql: str


@dataclass(frozen=True)
class Layout:
    """Where the tables of one database live on cluster `cluster`."""

    cluster: str
    database: str
    keeper: bool = False  # the cluster has Keeper: ReplicatedMergeTree and ON CLUSTER

    def __post_init__(self) -> None:
        identifier(self.cluster, "cluster name")
        identifier(self.database, "database name")

    def sharding_key(self, table: str) -> str:
        return SHARDING_KEY if table in SHARDED else FIRST_SHARD

    def rewrite(self, statement: str, tables: set[str]) -> list[Step]:
        """`statement` (of a migration) as what runs on the cluster. `tables`: the names migrations
        create with CREATE TABLE, so far and in this statement (a CREATE TABLE adds its own)."""
        head = _HEAD.match(statement)
        if head is None:
            return [self._each(statement, None)]
        verb = " ".join(head["verb"].upper().split())
        name = head.group(3)
        tail = statement[head.end():]
        exists = head["exists"] or ""
        if verb == "INSERT INTO":
            return [Step("once", statement)]  # through the Distributed tables: once, from one node
        if verb == "CREATE TABLE":
            tables.add(name)
            local = self._each(f"CREATE TABLE{exists} {name}{LOCAL}{self._replicated(tail, name)}", name + LOCAL)
            distributed = (f"CREATE TABLE{exists} {name} AS {self.database}.{name}{LOCAL} "
                           f"ENGINE = Distributed({self.cluster}, {self.database}, {name}{LOCAL}, "
                           f"{self.sharding_key(name)})")
            return [local, self._each(distributed, name)]
        if verb == "CREATE MATERIALIZED VIEW":
            # a materialized view sees the inserts of the table it reads: the local one, on each shard
            body = re.sub(r"\b(TO|FROM|JOIN)(\s+)`?(\w+)`?",
                          lambda m: m[1] + m[2] + (m[3] + LOCAL if m[3] in tables else m[3]), tail, flags=re.I)
            return [self._each(f"{verb}{exists} {name}{body}", name)]
        if name not in tables:
            return [self._each(statement, name)]
        if verb == "ALTER TABLE":
            steps = [self._each(f"ALTER TABLE{exists} {name}{LOCAL}{tail}", name + LOCAL)]
            if _COLUMN_CHANGE.match(tail):  # the Distributed table shows the same columns
                steps.append(self._each(statement, name))
            return steps
        if verb == "DROP TABLE":
            return [self._each(statement, name), self._each(f"DROP TABLE{exists} {name}{LOCAL}{tail}", name + LOCAL)]
        # TRUNCATE, DELETE FROM, OPTIMIZE: the rows are in the local tables
        return [self._each(f"{verb}{exists} {name}{LOCAL}{tail}", name + LOCAL)]

    def _each(self, sql: str, name: str | None) -> Step:
        if not self.keeper or name is None:
            return Step("each", sql)
        # ON CLUSTER goes right after the name: CREATE TABLE t ON CLUSTER c (...), ALTER TABLE t ON CLUSTER c ...
        head = _HEAD.match(sql)
        assert head is not None
        return Step("once", f"{sql[:head.end()]} ON CLUSTER {self.cluster}{sql[head.end():]}")

    def _replicated(self, tail: str, name: str) -> str:
        if not self.keeper:
            return tail

        def replicated(match: re.Match[str]) -> str:
            path = f"'/clickhouse/tables/{{shard}}/{self.database}/{name}{LOCAL}', '{{replica}}'"
            args = f"{path}, {match[2]}" if match[2] and match[2].strip() else path
            return f"ENGINE = Replicated{match[1]}MergeTree({args})"

        return _ENGINE.sub(replicated, tail, count=1)

    def first_shard_read(self, statement: str, small: frozenset[str]) -> str | None:
        """A SELECT every FROM and JOIN of which names one of the `small` tables (on the first shard),
        rewritten to read their `_local` tables, to be run on the first node; None for any other
        statement (a sharded table, a view, a table function, a subquery's alias, a column after
        FROM in `extract(... FROM x)` or ARRAY JOIN: read through the Distributed tables, as always).
        Only without Keeper, where the first node is the first shard's one copy."""
        if self.keeper or not _READ.match(statement):
            return None
        sources = _SOURCE.findall(statement)
        if not sources or any(name not in small for _, _, _, name in sources):
            return None
        return _SOURCE.sub(lambda m: f"{m[1]}{m[2]}{m[4]}{LOCAL}", statement)

    def mutation(self, statement: str) -> str | None:
        """A statement a Distributed table cannot run, on the local table instead (to be run on every
        node), or None for a statement that runs as it is."""
        head = _HEAD.match(statement)
        if head is None:
            return None
        verb = " ".join(head["verb"].upper().split())
        name, tail = head.group(3), statement[head.end():]
        if re.match(r"^\s*ON\s+CLUSTER\b", tail, re.I):  # reaches every node already
            return None
        local = name if name.endswith(LOCAL) else name + LOCAL
        if verb == "ALTER TABLE" and re.match(r"^\s*(UPDATE|DELETE|MODIFY\s+TTL|MATERIALIZE)\b", tail, re.I):
            return f"ALTER TABLE {local}{tail}"
        if verb in ("DELETE FROM", "TRUNCATE TABLE", "TRUNCATE", "OPTIMIZE TABLE"):
            return f"{verb}{head['exists'] or ''} {local}{tail}"
        return None


@dataclass
class Cluster:
    """What a client on a cluster carries: the layout and the clients of every node."""

    layout: Layout
    node_clients: Callable[[], list[Any]]
    first: tuple[Any, frozenset[str]] | None = None  # found once by first_shard()

    def first_shard(self) -> tuple[Any, frozenset[str]]:
        """The client of the first shard's node (the one whose system.clusters row of shard 1 is
        local) and the tables whose rows all live there: every `_local` MergeTree table of the
        database but the SHARDED ones. Read again after migrations (schema_changed). When no node
        of STEPWATCH_CLICKHOUSE_NODES says it is the first shard (a proxy in front of them), no
        table: every read goes through the Distributed tables."""
        if self.first is None:
            node, small = None, frozenset[str]()
            for candidate in self.node_clients():
                if candidate.command("SELECT count() FROM system.clusters WHERE cluster = {c:String} "
                                     "AND shard_num = 1 AND is_local", parameters={"c": self.layout.cluster}):
                    node = candidate
                    rows = node.query(
                        "SELECT name FROM system.tables WHERE database = {db:String} "
                        "AND endsWith(name, {local:String}) AND engine LIKE '%MergeTree'",
                        parameters={"db": self.layout.database, "local": LOCAL}).result_rows
                    small = frozenset(n[: -len(LOCAL)] for (n,) in rows) - SHARDED
                    break
            self.first = node, small
        return self.first

    def schema_changed(self) -> None:
        """Migrations ran: read the first shard's tables again at the next read."""
        self.first = None

    def first_shard_read(self, statement: str) -> tuple[Any, str] | None:
        """Where a statement reading only the small tables runs instead: (the first node's client, the
        statement on its local tables); None for any other statement (Layout.first_shard_read)."""
        if self.layout.keeper or not _READ.match(statement):
            return None
        node, small = self.first_shard()
        local = self.layout.first_shard_read(statement, small) if node is not None else None
        return None if local is None else (node, local)


_clients: weakref.WeakKeyDictionary[Any, Cluster] = weakref.WeakKeyDictionary()


def register(client: Any, cluster: Cluster) -> None:
    _clients[client] = cluster


def of(client: Any) -> Cluster | None:
    """The cluster a client of kernel/storage.py talks to, or None on one server or the embedded engine."""
    return _clients.get(client)
