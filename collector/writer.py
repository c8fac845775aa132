"""Group commit: many requests' events become one durable write, and one ClickHouse insert.

A request hands its validated rows to `EventWriter.submit` and waits for its answer. The
flusher takes everything pending once the first rows have waited `group_commit_ms` (sooner when
`group_commit_rows` are pending; at once when rows queued up while the previous write ran) and
makes it durable in one step, which depends on STEPWATCH_ACK_MODE:

- `wal` (default): the rows are appended to the spool and fsynced, then acknowledged. The
  shipper inserts the spool into ClickHouse every `flush_ms`, in large batches, and deletes
  what it inserted. An fsynced log is the stronger promise (a ClickHouse insert is not fsynced
  by default), the answer does not wait for ClickHouse, and ClickHouse gets the few large
  inserts it prefers instead of one small part per group commit.
- `insert`: the rows are inserted into ClickHouse, then acknowledged; the spool is used only
  while ClickHouse is unavailable.

Either way, when ClickHouse is down the rows wait in the spool (bounded: beyond it, SpoolFull
and a 503), the shipper retries every `spool_retry_s`, and a restarted collector replays the
spool before it serves. Rows inserted twice by a replay collapse in storage (exactly once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from collector import metrics
from collector.memory import MemoryReleaser
from collector.spool import Spool, SpoolFull
from kernel import migrations
from kernel.storage import SESSION_EVENT_COLUMNS, VISIT_COLUMNS, StorageUnavailable, Store

log = logging.getLogger("stepwatch.collector")


@dataclass
class _Pending:
    visits: bytes  # JSONEachRow blocks, or JSONCompactEachRow ones (collector.events.ValidatedBatch)
    visit_rows: int
    sessions: bytes
    session_rows: int
    done: asyncio.Future[str]
    compact: bool = False


class EventWriter:
    def __init__(self, store: Store, spool: Spool, *, ack_mode: str = "wal", group_rows: int = 20_000,
                 group_ms: float = 5.0, flush_ms: float = 200.0, retry_s: float = 2.0):
        self.store = store
        self.spool = spool
        self.ack_mode = ack_mode
        self.group_rows = group_rows
        self.group_s = group_ms / 1000
        self.flush_s = flush_ms / 1000
        self.retry_s = retry_s
        self.storage_ok = True
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._spool_io = ThreadPoolExecutor(1, thread_name_prefix="spool")
        self._shipping = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.release_memory = MemoryReleaser()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._ship_loop())]

    async def stop(self) -> None:
        """Make what is pending durable, ship what can be shipped, then stop."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pending:
            await self._flush(self._take())
        if self.storage_ok:
            await self.ship()
        self.spool.close()
        self._spool_io.shutdown(wait=True)

    async def submit(self, visits: list[bytes], sessions: list[bytes], compact: bool = False) -> str:
        """Wait until the rows are durable: "stored" or "spooled"; raises SpoolFull.

        Rows are JSONEachRow lines, or with `compact` JSONCompactEachRow lines of every column.
        """
        if not visits and not sessions:
            return "stored"
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append(
            _Pending(b"\n".join(visits), len(visits), b"\n".join(sessions), len(sessions), done, compact))
        self._pending_rows += len(visits) + len(sessions)
        self._wake.set()
        if self._pending_rows >= self.group_rows:
            self._full.set()
        return await done

    def _take(self) -> list[_Pending]:
        batch, self._pending, self._pending_rows = self._pending, [], 0
        self._wake.clear()
        self._full.clear()
        return batch

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            if self._pending_rows < self.group_rows and self.group_s > 0:
                try:  # an idle writer lets concurrent requests join this write
                    await asyncio.wait_for(self._full.wait(), self.group_s)
                except TimeoutError:
                    pass
            # Rows that arrive while this write runs are written right after it, without waiting.
            await self._flush(self._take())

    async def _flush(self, pending: list[_Pending]) -> None:
        compact = [p for p in pending if p.compact]
        for batch in (compact, [p for p in pending if not p.compact]) if len(compact) < len(pending) else (compact,):
            if batch:
                await self._flush_format(batch, batch[0].compact)

    async def _flush_format(self, batch: list[_Pending], compact: bool) -> None:
        visits = b"\n".join(p.visits for p in batch if p.visit_rows)
        sessions = b"\n".join(p.sessions for p in batch if p.session_rows)
        visit_rows = sum(p.visit_rows for p in batch)
        session_rows = sum(p.session_rows for p in batch)
        outcome: str | BaseException = "stored"
        if self.ack_mode == "insert" and self.storage_ok:
            started = time.perf_counter()
            try:
                await self.store.run(_insert_all, visits, sessions, compact)
                metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
                metrics.BATCH_ROWS.observe(visit_rows + session_rows)
            except Exception as exc:  # any failure: keep the rows safe in the spool instead
                log.warning("insert failed, spooling until ClickHouse is back", extra={"error": str(exc)})
                self.storage_ok = False
        if self.ack_mode == "wal" or not self.storage_ok:
            outcome = "spooled"
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._spool_io, self.spool.append, visits, visit_rows, sessions, session_rows, compact
                )
            except SpoolFull as exc:
                outcome = exc
            except OSError as exc:
                outcome = SpoolFull(f"spool write failed: {exc}")
            metrics.SPOOL_BYTES.set(self.spool.bytes)
        for p in batch:
            if p.done.done():
                continue
            if isinstance(outcome, BaseException):
                p.done.set_exception(outcome)
            else:
                p.done.set_result(outcome)
        if self.ack_mode == "insert" and self.storage_ok:
            await self._release_memory()  # after the answers: they do not wait for it

    async def _release_memory(self) -> None:
        """After an insert its buffers are free: give them back to the system (collector.memory), in a
        storage worker (malloc_trim takes the allocator's locks), at most once per its interval."""
        if self.release_memory.due():
            try:
                await self.store.run(_release, self.release_memory)
            except Exception:  # never a reason to fail an insert or to stop the writer
                log.debug("releasing memory failed", exc_info=True)

    async def _ship_loop(self) -> None:
        while True:
            try:
                await self.ship()
            except Exception:
                log.exception("shipping the spool failed")
            healthy_wal = self.ack_mode == "wal" and self.storage_ok
            await asyncio.sleep(self.flush_s if healthy_wal else self.retry_s)

    async def ship(self) -> bool:
        """Insert the spool into ClickHouse; True when it is empty and ClickHouse answered."""
        async with self._shipping:
            loop = asyncio.get_running_loop()
            files = await loop.run_in_executor(self._spool_io, self.spool.rotate)
            if not files and self.storage_ok:
                return True
            try:
                if not self.storage_ok:
                    await self.store.run(_migrate)  # also proves ClickHouse answers again
                for path in files:
                    await self.store.run(_ship_file, path)
                    await loop.run_in_executor(self._spool_io, self.spool.remove, path)
                if files:
                    await self._release_memory()
                metrics.SPOOL_BYTES.set(self.spool.bytes)
            except Exception as exc:
                if self.storage_ok:
                    log.warning("ClickHouse unavailable; events wait in the spool", extra={"error": str(exc)})
                self.storage_ok = False
                return False
            if not self.storage_ok:
                log.info("ClickHouse is back; spool drained")
            self.storage_ok = True
            return not self.spool.files()


# The collector's inserts are a few MB of JSONEachRow every flush_ms: ClickHouse's parallel parsing
# (a thread and a 10 MB chunk buffer per core) bought nothing for them on two cores, and with it off
# the collector's peak RSS in benchmarks/ingest.py was 30-50 MB lower at the same CPU per request.
INSERT_SETTINGS = {"input_format_parallel_parsing": 0}


def _insert(client: Any, table: str, block: bytes, columns: tuple[str, ...] | None) -> None:
    """storage.insert_visits / insert_session_events with INSERT_SETTINGS, and JSONCompactEachRow rows of
    `columns` when given (ClickHouse parses those in half the CPU of JSONEachRow: no key per value)."""
    if not block:
        return
    fmt = "JSONCompactEachRow" if columns else "JSONEachRow"
    try:
        client.raw_insert(table, column_names=columns, insert_block=block, fmt=fmt, settings=INSERT_SETTINGS)
    except Exception as exc:
        raise StorageUnavailable(f"insert into {table} failed: {exc}") from exc


def insert_visits(client: Any, block: bytes, compact: bool = False) -> None:
    _insert(client, "step_visits", block, VISIT_COLUMNS if compact else None)


# Compact session rows spooled before the table had `attributes` have one value fewer; a spool
# file holds the rows of one collector version, so its first row tells which columns it has.
_SESSION_COLUMNS_BEFORE_ATTRIBUTES = tuple(c for c in SESSION_EVENT_COLUMNS if c != "attributes")


def insert_session_events(client: Any, block: bytes, compact: bool = False) -> None:
    columns = None
    if compact:
        first = orjson.loads(block.partition(b"\n")[0] or b"[]")
        columns = SESSION_EVENT_COLUMNS if len(first) != len(_SESSION_COLUMNS_BEFORE_ATTRIBUTES) \
            else _SESSION_COLUMNS_BEFORE_ATTRIBUTES
    _insert(client, "session_events", block, columns)


def _insert_all(client: Any, visits: bytes, sessions: bytes, compact: bool = False) -> None:
    insert_visits(client, visits, compact)
    insert_session_events(client, sessions, compact)


SHIP_BLOCK_BYTES = 32 * 1024 * 1024  # one insert per table per this many bytes of a spool file


def _ship_file(client: Any, path: Any) -> None:
    """Insert one spool file: its records joined into a few large inserts (ClickHouse prefers them)."""
    pending: dict[tuple[str, bool], list[bytes]] = {}
    size = 0

    def flush() -> None:
        nonlocal size
        started = time.perf_counter()
        for (kind, compact), blocks in sorted(pending.items()):
            insert = insert_visits if kind == "visits" else insert_session_events
            insert(client, b"\n".join(blocks), compact)
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        pending.clear()
        size = 0

    for record in Spool.read(path):
        pending.setdefault((record.kind, record.compact), []).append(record.block)
        size += len(record.block)
        metrics.BATCH_ROWS.observe(record.rows)
        if size >= SHIP_BLOCK_BYTES:
            flush()
    flush()


def _release(client: Any, release: MemoryReleaser) -> None:
    release()


def _migrate(client: Any) -> None:
    migrations.apply_pending(client)
