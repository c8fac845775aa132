"""Group commit: many requests' events become one ClickHouse insert, acknowledged when durable.

A request hands its validated rows to `EventWriter.submit` and waits. The flusher takes
everything pending once the first rows have waited `group_commit_ms` (or sooner when
`group_commit_rows` are pending, or at once when an insert just finished and more queued up
meanwhile) and inserts it in one call. Only when that insert succeeded, or, if ClickHouse is
unavailable, when the rows are fsynced into the spool, do the waiting requests get their
answer. If neither works (spool full) they get an error and the tracker retries later.

While ClickHouse is down, new batches go straight to the spool; the drainer retries every
`spool_retry_s` and, once ClickHouse answers, inserts the spooled files and resumes normal mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from collector import metrics
from collector.spool import Spool, SpoolFull
from stepwatch import migrations
from stepwatch.storage import StorageUnavailable, Store, insert_session_events, insert_visits

log = logging.getLogger("stepwatch.collector")


@dataclass
class _Pending:
    visits: list[tuple[Any, ...]]
    sessions: list[tuple[Any, ...]]
    done: asyncio.Future[str]


class EventWriter:
    def __init__(self, store: Store, spool: Spool, group_rows: int, group_ms: float, retry_s: float):
        self.store = store
        self.spool = spool
        self.group_rows = group_rows
        self.group_s = group_ms / 1000
        self.retry_s = retry_s
        self.storage_ok = True
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._spool_io = ThreadPoolExecutor(1, thread_name_prefix="spool")
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._drain_loop())]

    async def stop(self) -> None:
        """Flush what is pending, then stop. Spooled rows stay on disk for the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pending:
            await self._flush(self._take())
        self.spool.close()
        self._spool_io.shutdown(wait=True)

    async def submit(self, visits: list[tuple[Any, ...]], sessions: list[tuple[Any, ...]]) -> str:
        """Wait until the rows are durable; returns "stored" or "spooled", raises SpoolFull."""
        if not visits and not sessions:
            return "stored"
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(visits, sessions, done))
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
                try:  # let concurrent requests join this insert
                    await asyncio.wait_for(self._full.wait(), self.group_s)
                except TimeoutError:
                    pass
            await self._flush(self._take())

    async def _flush(self, batch: list[_Pending]) -> None:
        visits = [row for p in batch for row in p.visits]
        sessions = [row for p in batch for row in p.sessions]
        outcome: str | BaseException = "stored"
        if self.storage_ok:
            started = time.perf_counter()
            try:
                await self.store.run(_insert_all, visits, sessions)
                metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
            except Exception as exc:  # any failure: keep the rows safe in the spool instead
                log.warning("insert failed, spooling until ClickHouse is back", extra={"error": str(exc)})
                self.storage_ok = False
        if not self.storage_ok:
            outcome = "spooled"
            try:
                await asyncio.get_running_loop().run_in_executor(self._spool_io, self.spool.append, visits, sessions)
            except SpoolFull as exc:
                outcome = exc
            except OSError as exc:
                outcome = SpoolFull(f"spool write failed: {exc}")
            metrics.SPOOL_BYTES.set(self.spool.bytes)
        metrics.BATCH_ROWS.observe(len(visits) + len(sessions))
        for p in batch:
            if p.done.done():
                continue
            if isinstance(outcome, BaseException):
                p.done.set_exception(outcome)
            else:
                p.done.set_result(outcome)

    async def _drain_loop(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                log.exception("spool drain failed")
            await asyncio.sleep(self.retry_s)

    async def drain(self) -> bool:
        """Insert spooled files into ClickHouse; True when the spool is empty and storage answers."""
        loop = asyncio.get_running_loop()
        files = await loop.run_in_executor(self._spool_io, self.spool.rotate)
        if not files and self.storage_ok:
            return True
        try:
            await self.store.run(_migrate_and_ping)
            for path in files:
                for visits, sessions in self.spool.read(path):
                    await self.store.run(_insert_all, [tuple(r) for r in visits], [tuple(r) for r in sessions])
                await loop.run_in_executor(self._spool_io, self.spool.remove, path)
                metrics.SPOOL_BYTES.set(self.spool.bytes)
        except (StorageUnavailable, Exception) as exc:
            if self.storage_ok:
                log.warning("spool drain deferred", extra={"error": str(exc)})
            self.storage_ok = False
            return False
        if not self.storage_ok:
            log.info("ClickHouse is back; spool drained")
        self.storage_ok = True
        return not self.spool.files()


def _insert_all(client: Any, visits: list[tuple[Any, ...]], sessions: list[tuple[Any, ...]]) -> None:
    insert_visits(client, visits)
    insert_session_events(client, sessions)


def _migrate_and_ping(client: Any) -> None:
    migrations.apply_pending(client)
