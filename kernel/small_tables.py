"""Reads of small tables remembered while the table is unchanged, for the dashboards' GET requests.

Every page reads the same few small tables before its own figures: the account, the sites, the
teams and their members, the process, the bands, the latest analysis run. Each read is a query of
3-8 ms, most of it ClickHouse's work per query rather than per row, and a page made seven or eight
of them one after the other (about 40 ms of a page on a 2-core machine; docs/performance.md).

A GET request instead asks ClickHouse once which of these tables changed (`versions`: one query on
system.parts) and is answered from what this process read since, for the same function and
arguments. A table's version is the highest block number and data version of its active parts and
their count: every insert takes a new block number and every mutation a new data version, whoever
made it (another stepwatch process behind the load balancer, the CLI, a ClickHouse client), so a
change is seen by the next request. A merge at most makes one read again.

Only requests that began a snapshot (`begin`, done by the dashboards' GET pages and JSON twins) use
it; actions (POST), the collector, the analysis and the CLI read the tables directly, so a change
and the read after it in the same request never see an old copy. A remembered value is handed out
as a shallow copy: callers may change the list or dict they get, not the frozen rows in it.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from kernel import cluster

# The tables read through `remembered`; a function may only be remembered for tables listed here.
# pair_days and session_paths are not small, but they change only when the analysis refreshes them,
# and what is remembered of them is small (storage.older_refreshes_left_out).
TABLES = ("users", "sites", "teams", "team_members", "managers", "processes", "bands", "pair_stats", "pair_days",
          "session_paths")

F = TypeVar("F", bound=Callable[..., Any])


def versions(client: Client) -> dict[str, tuple[int, int, int]]:
    """Each small table's version now: (highest block number, highest data version, active parts)."""
    on = cluster.of(client)
    if on is not None:  # on a cluster: the parts of the local tables, on every node (kernel/cluster.py)
        # each node asked by itself, all at once: clusterAllReplicas costs a Distributed query's
        # extra 6-10 ms (docs/performance.md)
        nodes = on.node_clients()
        with ThreadPoolExecutor(len(nodes)) as pool:
            found = list(pool.map(lambda node: _local_versions(node, cluster.LOCAL), nodes))
        merged: dict[str, tuple[int, int, int]] = {}
        for rows in found:
            for table, (block, data, parts) in rows.items():
                was = merged.get(table, (0, 0, 0))
                merged[table] = (max(was[0], block), max(was[1], data), was[2] + parts)
        return merged
    return _local_versions(client, "")


def _local_versions(client: Client, suffix: str) -> dict[str, tuple[int, int, int]]:
    rows = client.query(
        f"SELECT replaceRegexpOne(table, '{suffix}$', ''), max(max_block_number), max(data_version), count() "
        "FROM system.parts WHERE database = currentDatabase() AND active AND table IN {tables:Array(String)} "
        "GROUP BY table",
        parameters={"tables": [t + suffix for t in TABLES]},
    ).result_rows
    return {table: (int(block), int(data), int(parts)) for table, block, data, parts in rows}


@dataclass
class Memory:
    """What one store's process has read: per (function, arguments), the value and the table version."""

    entries: dict[tuple[Any, ...], tuple[Any, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    limit: int = 10_000  # distinct reads kept; beyond it the memory starts afresh

    def get(self, key: tuple[Any, ...], version: Any) -> tuple[bool, Any]:
        with self.lock:
            found = self.entries.get(key)
        if found is not None and found[0] == version:
            return True, found[1]
        return False, None

    def put(self, key: tuple[Any, ...], version: Any, value: Any) -> None:
        with self.lock:
            if len(self.entries) >= self.limit:
                self.entries.clear()
            self.entries[key] = (version, value)


@dataclass(frozen=True)
class Snapshot:
    memory: Memory
    versions: dict[str, tuple[int, int, int]]


_current: contextvars.ContextVar[Snapshot | None] = contextvars.ContextVar("stepwatch_small_tables", default=None)


def begin(memory: Memory, table_versions: dict[str, tuple[int, int, int]]) -> contextvars.Token[Snapshot | None]:
    """From now on in this context (a request), remembered reads answer as of these versions."""
    return _current.set(Snapshot(memory, table_versions))


def end(token: contextvars.Token[Snapshot | None]) -> None:
    _current.reset(token)


def remembered(table: str) -> Callable[[F], F]:
    """`fn(client, *args)` reads only `table`: within a snapshot, answer it again while the table is unchanged."""
    if table not in TABLES:
        raise ValueError(f"{table} is not one of the small tables: {TABLES}")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def read(client: Client, *args: Any, **kwargs: Any) -> Any:
            snapshot = _current.get()
            if snapshot is None:
                return fn(client, *args, **kwargs)
            key = (fn.__module__, fn.__qualname__, args, tuple(sorted(kwargs.items())))
            version = snapshot.versions.get(table)  # None: the table has no rows (no parts) yet
            found, value = snapshot.memory.get(key, version)
            if not found:
                value = fn(client, *args, **kwargs)
                snapshot.memory.put(key, version, value)
            return copy.copy(value)

        return read  # type: ignore[return-value]

    return decorate
