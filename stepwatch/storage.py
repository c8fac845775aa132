"""The one door to ClickHouse.

Every read and write of stepwatch goes through clickhouse-connect, either to the embedded
engine (`chdb://<data dir>`, the real ClickHouse engine in this process) or to a ClickHouse
server (`STEPWATCH_CLICKHOUSE_URL`). The SQL is the same for both. Values are always bound
as query parameters (`{name:Type}`); the only exception is DDL, where ClickHouse accepts no
parameters, and there only validated integers and identifiers are written in.

The embedded engine allows one process per data directory. `stepwatch serve` records itself
in `<data dir>/serve.json`; other commands either go through that server (see cli.py) or
stop with `StoreLocked`, which names the process holding the directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from stepwatch.settings import Settings

SERVE_FILE = "serve.json"
ENGINE_STATUS_FILE = "status"


class StorageUnavailable(Exception):
    """ClickHouse cannot be reached or refused the operation."""


class StoreLocked(Exception):
    """The embedded engine's data directory is held by another process."""

    def __init__(self, data_dir: Path, pid: int | None, url: str | None = None):
        self.data_dir, self.pid, self.url = data_dir, pid, url
        holder = f"process {pid}" if pid else "another process"
        if url:
            holder += f" (stepwatch serve at {url})"
        super().__init__(
            f"the data directory {data_dir} is in use by {holder}; the embedded engine allows one "
            f"process per directory. Stop that process, or point STEPWATCH_CLICKHOUSE_URL at a ClickHouse server."
        )


@dataclass(frozen=True)
class ServeInfo:
    """What a running `stepwatch serve` publishes about itself in its data directory."""

    pid: int
    url: str
    token: str


def connect(settings: Settings) -> Client:
    """A clickhouse-connect client on the configured store, its database created if missing."""
    if settings.embedded:
        return _connect_embedded(settings)
    return _connect_server(settings.clickhouse_url or "", settings.database)


def _connect_embedded(settings: Settings) -> Client:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    dsn = f"chdb://{data_dir}"
    try:
        bootstrap = clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:  # the engine says little more than "cannot initialize"
        pid = engine_holder(data_dir)
        if pid is not None and pid != os.getpid():
            info = read_serve_info(data_dir)
            raise StoreLocked(data_dir, pid, info.url if info and info.pid == pid else None) from None
        raise StorageUnavailable(f"cannot open the embedded engine in {data_dir}: {exc}") from exc
    bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {_identifier(settings.database)}")
    return clickhouse_connect.get_client(dsn=dsn, database=settings.database)


def _connect_server(url: str, default_database: str) -> Client:
    from urllib.parse import urlparse

    database = urlparse(url).path.strip("/") or default_database
    try:
        bootstrap = clickhouse_connect.get_client(dsn=url, database="default")
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {_identifier(database)}")
        return clickhouse_connect.get_client(dsn=url, database=database)
    except (ClickHouseError, OSError) as exc:
        raise StorageUnavailable(f"cannot reach ClickHouse at {_redact(url)}: {exc}") from exc


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise ValueError(f"not a valid database name: {name!r}")
    return name


def _redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def engine_holder(data_dir: Path) -> int | None:
    """The pid the embedded engine wrote in its status file, if that process is alive."""
    try:
        text = (data_dir / ENGINE_STATUS_FILE).read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"PID:\s*(\d+)", text)
    if not match:
        return None
    pid = int(match.group(1))
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_serve_info(data_dir: Path) -> ServeInfo | None:
    """The running server's address and admin token, if a live `stepwatch serve` holds data_dir."""
    try:
        raw = json.loads((data_dir / SERVE_FILE).read_text())
        info = ServeInfo(pid=int(raw["pid"]), url=str(raw["url"]), token=str(raw["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if pid_alive(info.pid) else None


def write_serve_info(data_dir: Path, info: ServeInfo) -> None:
    path = data_dir / SERVE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the token is a credential
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": info.pid, "url": info.url, "token": info.token}, f)
    os.replace(tmp, path)


def remove_serve_info(data_dir: Path) -> None:
    info = read_serve_info(data_dir)
    if info is None or info.pid == os.getpid():
        (data_dir / SERVE_FILE).unlink(missing_ok=True)


# -- step visits and service sessions --------------------------------------------------------

VISIT_COLUMNS = (
    "site", "visit_id", "seq", "final", "manager", "session_id", "customer", "process", "step",
    "path", "started_at", "active_ms", "idle_ms", "hidden_ms", "tracker", "source",
)
SESSION_EVENT_COLUMNS = (
    "site", "event_id", "session_id", "action", "manager", "customer", "process", "at", "outcome",
    "tracker", "source",
)


def insert_visits(client: Client, block: bytes) -> None:
    """Insert step-visit reports: a JSONEachRow block, one object per line, keys from VISIT_COLUMNS.

    Replays and repeated checkpoints are harmless: the table keeps one row per visit, the one
    with the highest `seq` (ReplacingMergeTree), and readers use the deduplicated `visits` view.
    Timestamps are seconds with a fraction, e.g. 1763884800.123 (ClickHouse reads a JSON number
    into DateTime64 as seconds).
    """
    _insert(client, "step_visits", block)


def insert_session_events(client: Client, block: bytes) -> None:
    """Insert service-session start/end events: a JSONEachRow block, keys from SESSION_EVENT_COLUMNS."""
    _insert(client, "session_events", block)


def _insert(client: Client, table: str, block: bytes) -> None:
    # JSONEachRow: ClickHouse parses the rows in C++, several times faster than converting them to
    # columns in Python, and the collector's spool holds the very same bytes.
    if not block:
        return
    try:
        client.raw_insert(table, insert_block=block, fmt="JSONEachRow")
    except (ClickHouseError, OSError) as exc:
        raise StorageUnavailable(f"insert into {table} failed: {exc}") from exc


def query_rows(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a read query with bound parameters and return its rows as dictionaries."""
    result = client.query(sql, parameters=parameters or {})
    names = result.column_names
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def ping(client: Client) -> bool:
    try:
        client.command("SELECT 1")
    except Exception:
        return False
    return True


class Store:
    """Runs storage calls off the event loop, one client per worker thread, reconnecting on failure.

    The chdb backend has no async client, and a ClickHouse server may be slow or down: neither
    may block the event loop. `await store.run(fn, *args)` calls `fn(client, *args)` in a worker.
    """

    def __init__(self, settings: Settings, workers: int = 2, name: str = "clickhouse"):
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.settings = settings
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._local = threading.local()
        self._clients: list[Client] = []

    def client(self) -> Client:
        """This thread's client (call from a worker thread, or from synchronous code)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect(self.settings)
            self._local.client = client
            self._clients.append(client)
        return client

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import OperationalError

        try:
            return fn(self.client(), *args, **kwargs)
        except (StorageUnavailable, OperationalError, OSError) as exc:
            self._local.client = None  # reconnect on the next call
            if isinstance(exc, StorageUnavailable):
                raise
            raise StorageUnavailable(str(exc)) from exc

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import asyncio
        import functools

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self.call, fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for client in self._clients:
            try:
                client.close()
            except Exception:  # closing is best effort
                pass
        self._clients.clear()


# -- what the analysis reads -------------------------------------------------------------------

# Which time of a visit is compared with the bands (STEPWATCH_ANALYSIS_METRIC): a column of
# session_steps, chosen by name, so nothing from outside is written into the SQL.
METRIC_COLUMNS = {"visible": "visible_ms", "active": "active_ms", "wall": "wall_ms"}


@dataclass(frozen=True)
class PairTimes:
    """One manager's times on one step: one value per service session, with the session's day."""

    manager: str
    step: str
    times_ms: Any  # numpy int64 array
    days: Any  # numpy datetime64[D] array, aligned with times_ms


def refresh_session_steps(client: Client, site: str) -> int:
    """Bring the daily pre-aggregate up to date: recompute the days that received visits since the
    last refresh. Returns how many days were recomputed (0 when nothing arrived)."""
    mark = client.command("SELECT max(watermark) FROM analysis_state FINAL WHERE site = {site:String}",
                          parameters={"site": site})
    # The new watermark stops a second short of now: rows still arriving with the same millisecond
    # as the newest row seen are taken next time, and a bulk load sharing one timestamp is not
    # redone on every run. Recomputing a day twice is harmless (idempotent).
    new = client.query(
        "SELECT least(max(received_at), now64(3) - INTERVAL 1 SECOND), groupUniqArray(toDate(started_at)) "
        "FROM step_visits WHERE site = {site:String} AND received_at > {mark:DateTime64(3, 'UTC')}",
        parameters={"site": site, "mark": mark or "1970-01-01 00:00:00"},
    ).result_rows[0]
    latest, days = new
    if not days:
        return 0
    client.command(
        """
        INSERT INTO session_steps (site, day, manager, step, session_id, visible_ms, active_ms, wall_ms)
        SELECT site, toDate(started_at) AS day, manager, step, session_id, sum(active_ms + idle_ms),
               sum(active_ms), sum(active_ms + idle_ms + hidden_ms)
        FROM visits
        WHERE site = {site:String} AND toDate(started_at) IN {days:Array(Date)}
        GROUP BY site, day, manager, step, session_id
        """,
        parameters={"site": site, "days": sorted(days)},
    )
    client.insert("analysis_state", [[site, latest]], column_names=["site", "watermark"])
    return len(days)


def session_step_times(client: Client, site: str, since: Any, until: Any, metric: str = "visible") -> list[PairTimes]:
    """Per manager x step, the time of each service session on the step, for sessions from `since`
    (a date, included) to `until` (a date, excluded), as of the last refresh_session_steps.

    A session's time on a step is the sum of its visits to the step (a manager may come back to a
    step within one session), each visit counted once. Values travel as numeric columns (numpy),
    not as Python lists: a 28-day window of 10 million visits a quarter is millions of sessions.
    """
    import numpy as np

    parameters = {"site": site, "since": _day(since), "until": _day(until)}
    where = "site = {site:String} AND day >= {since:Date} AND day < {until:Date}"
    column = METRIC_COLUMNS[metric]
    names = client.query(
        f"SELECT DISTINCT cityHash64(manager, step) AS pair, manager, step FROM session_steps WHERE {where}",
        parameters=parameters,
    ).result_rows
    flat = client.query_np(
        f"""
        SELECT cityHash64(manager, step) AS pair, sum({column}) AS t, min(day) AS d
        FROM session_steps FINAL WHERE {where}
        GROUP BY manager, step, session_id
        ORDER BY pair, d
        """,
        parameters=parameters,
    )
    if flat.size == 0:
        return []
    pairs, times, days = flat["pair"], flat["t"].astype(np.int64), flat["d"].astype("datetime64[D]")
    bounds = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1], True])
    by_hash = {int(h): (manager, step) for h, manager, step in names}
    found = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        name = by_hash.get(int(pairs[start]))
        if name is not None:
            found.append(PairTimes(name[0], name[1], times[start:end], days[start:end]))
    return sorted(found, key=lambda p: (p.manager, p.step))


def _day(value: Any) -> Any:
    return value.date() if hasattr(value, "date") and callable(value.date) else value
