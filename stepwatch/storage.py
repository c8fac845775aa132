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


# Days recomputed per INSERT when refreshing the pre-aggregate: bounds the memory of the grouping
# when a whole history arrives at once (an import, an upgrade), at no cost to the daily runs.
REFRESH_DAYS_PER_STATEMENT = 7


def refresh_session_steps(client: Client, site: str) -> int:
    """Bring the daily pre-aggregate up to date: recompute the days that received visits since the
    last refresh. Returns how many days were recomputed (0 when nothing arrived).

    A refresh rewrites whole days, all its rows with one computed_at, then deletes the older rows of
    those days in the background. Readers take each day's newest rows (session_step_times), so a
    day is never missing and the older rows never count, whether or not they are gone yet (two
    refreshes at once included). A day is one insert block up to a million sessions a day: beyond
    that, an insert that fails halfway leaves a partial day until the next run recomputes it.
    """
    mark = client.command("SELECT max(watermark) FROM analysis_state FINAL WHERE site = {site:String}",
                          parameters={"site": site})
    # The new watermark stops a second short of now: rows still arriving with the same millisecond
    # as the newest row seen are taken next time, and a bulk load sharing one timestamp is not
    # redone on every run. Recomputing a day twice is harmless (idempotent).
    new = client.query(
        "SELECT least(max(received_at), now64(3) - INTERVAL 1 SECOND), groupUniqArray(toDate(started_at)), "
        "toString(now64(6, 'UTC')) "
        "FROM step_visits WHERE site = {site:String} AND received_at > {mark:DateTime64(3, 'UTC')}",
        parameters={"site": site, "mark": mark or "1970-01-01 00:00:00"},
    ).result_rows[0]
    latest, days, computed_at = new
    if not days:
        return 0
    days = sorted(days)
    # Each visit counted once, as its latest report: the row the `visits` view (FINAL) would keep,
    # i.e. per sorting key of step_visits the highest seq (a replay of the same seq: the later
    # arrival). Grouping the day's rows does that in a tenth of the time FINAL takes, because FINAL
    # cannot prune step_visits by day (its key puts the day after the manager and step). A few days
    # per statement keep the grouping's memory small when a whole history arrives at once.
    for first in range(0, len(days), REFRESH_DAYS_PER_STATEMENT):
        client.command(
            """
            INSERT INTO session_steps (site, day, manager, step, session_id, visible_ms, active_ms, wall_ms,
                                       computed_at)
            SELECT {site:String}, day, manager, step, latest.1 AS session_id, sum(latest.2 + latest.3),
                   sum(latest.2), sum(latest.2 + latest.3 + latest.4), {at:DateTime64(6, 'UTC')}
            FROM (
                SELECT toDate(started_at) AS day, manager, step, visit_id,
                       argMax((session_id, active_ms, idle_ms, hidden_ms), (seq, received_at)) AS latest
                FROM step_visits
                WHERE site = {site:String} AND toDate(started_at) IN {days:Array(Date)}
                GROUP BY day, manager, step, visit_id
            )
            GROUP BY day, manager, step, session_id
            """,
            parameters={"site": site, "days": days[first:first + REFRESH_DAYS_PER_STATEMENT], "at": computed_at},
        )
    # The older rows go in the background (a lightweight delete waits for running merges of the
    # partition, seconds after an insert); until they are gone the reader keeps the newest row.
    client.command(
        "DELETE FROM session_steps WHERE site = {site:String} AND day IN {days:Array(Date)} "
        "AND computed_at < {at:DateTime64(6, 'UTC')}",
        parameters={"site": site, "days": days, "at": computed_at},
        settings={"lightweight_deletes_sync": 0},
    )
    client.insert("analysis_state", [[site, latest]], column_names=["site", "watermark"])
    return len(days)


def session_step_times(client: Client, site: str, since: Any, until: Any, metric: str = "visible") -> list[PairTimes]:
    """Per manager x step, the time of each service session on the step, for sessions from `since`
    (a date, included) to `until` (a date, excluded), as of the last refresh_session_steps.

    A session's time on a step is the sum of its visits to the step within the range (a manager
    may come back to a step within one session, or a session may go on past midnight), each visit
    counted once, dated by its first day in the range. Values travel as numeric columns (numpy),
    not as Python lists: a 28-day window of 10 million visits a quarter is millions of sessions.
    Within a pair, sessions come ordered by day, then time.
    """
    import numpy as np

    parameters: dict[str, Any] = {"site": site, "since": _day(since), "until": _day(until)}
    who = client.query(f"SELECT groupUniqArray(manager), groupUniqArray(step) FROM session_steps WHERE {_RANGE}",
                       parameters=parameters).result_rows
    managers, steps = (list(who[0]) if who else [[], []])
    if not managers:
        return []
    pair, names = _pair_key(client, site, managers, steps)
    column = METRIC_COLUMNS[metric]
    flat = _read_rows(client, f"SELECT {pair} AS pair, session_key, {column} AS t, toUInt16(day) AS d "
                              f"FROM session_steps WHERE {_RANGE} AND {_CURRENT} ORDER BY pair, d, t", parameters)
    # Almost every session has one row in the range. The few with more (past midnight, or back on
    # another day) share a session_key: one sort of the keys finds them, and ClickHouse sums them
    # exactly, by their strings (a hash collision only sends two sessions down this path).
    keys = np.sort(flat["session_key"])
    repeated = np.unique(keys[1:][keys[1:] == keys[:-1]])
    if repeated.size:
        flat = _merge_repeated(client, flat, repeated, pair, column, parameters)
    if flat["pair"].size == 0:
        return []
    pairs, times, days = flat["pair"], flat["t"].view(np.int64), flat["d"].astype("datetime64[D]")
    bounds = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1], True])
    found = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        name = names.get(int(pairs[start]))
        if name is not None:
            found.append(PairTimes(name[0], name[1], times[start:end], days[start:end]))
    return sorted(found, key=lambda p: (p.manager, p.step))


# The SQL of session_step_times, put together from these fixed fragments (no value is written in).
_RANGE = "site = {site:String} AND day >= {since:Date} AND day < {until:Date}"
# A refresh rewrites whole days, so each day's newest rows (highest computed_at) are the whole day;
# older ones wait for their delete.
_CURRENT = f"(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {_RANGE} GROUP BY day)"
# How a manager x step pair is keyed in the read: the stored hash, else (if two pairs of the range
# share it, about 1 in 10^13) another hash of the same strings.
_PAIR_KEYS = (("pair", "cityHash64(manager, step)"), ("sipHash64(manager, step)", "sipHash64(manager, step)"))
_REPEATED_AS_PARAMETER = 10_000
# The columns of the read: pair key, session key, time, day (days since 1970).
_ROW_FIELDS = (("pair", "UInt64", "<u8"), ("session_key", "UInt64", "<u8"), ("t", "UInt64", "<u8"),
               ("d", "UInt16", "<u2"))


def _read_rows(client: Client, sql: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The rows of `sql` (the columns of _ROW_FIELDS) as one numpy array per column.

    The result travels in ClickHouse's Native format, a column at a time per block, and numpy reads
    each column in place: several times cheaper than rows of Python values, and about half the
    cost of RowBinary, which the engine writes a value at a time.
    """
    import numpy as np

    raw = memoryview(client.raw_query(sql, parameters=parameters, fmt="Native"))
    parts: dict[str, list[Any]] = {name: [np.empty(0, dtype=code)] for name, _, code in _ROW_FIELDS}
    at = 0
    while at < len(raw):
        columns, at = _varint(raw, at)
        rows, at = _varint(raw, at)
        if columns != len(_ROW_FIELDS):
            raise StorageUnavailable(f"expected {len(_ROW_FIELDS)} columns from ClickHouse, got {columns}")
        for name, kind, code in _ROW_FIELDS:
            for expected in (name, kind):  # each column: its name, its type, then its values
                size, at = _varint(raw, at)
                if bytes(raw[at:at + size]) != expected.encode():
                    raise StorageUnavailable(f"unexpected column from ClickHouse: {bytes(raw[at:at + size])!r}")
                at += size
            width = np.dtype(code).itemsize * rows
            parts[name].append(np.frombuffer(raw[at:at + width], dtype=code))
            at += width
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _merge_repeated(client: Client, flat: Any, repeated: Any, pair: str, column: str,
                    parameters: dict[str, Any]) -> Any:
    """`flat` with the rows of the `repeated` sessions replaced by one exact row per session (the
    sum of its days in the range, dated by the first), still ordered by pair, day and time."""
    import numpy as np

    at = np.searchsorted(repeated, flat["session_key"]).clip(max=repeated.size - 1)
    keep = repeated[at] != flat["session_key"]
    single = {name: values[keep] for name, values in flat.items()}
    parameters = dict(parameters)
    if repeated.size <= _REPEATED_AS_PARAMETER:
        parameters["repeated"] = repeated.tolist()
        keys = "{repeated:Array(UInt64)}"
    else:  # too many to send as a parameter: ClickHouse finds them again
        keys = f"(SELECT session_key FROM session_steps WHERE {_RANGE} AND {_CURRENT} GROUP BY session_key " \
               "HAVING count() > 1)"
    summed = _read_rows(
        client,
        "SELECT pair, toUInt64(0) AS session_key, t, d FROM ("
        f"    SELECT {pair} AS pair, sum({column}) AS t, toUInt16(min(day)) AS d FROM session_steps"
        f"    WHERE {_RANGE} AND {_CURRENT} AND session_key IN {keys} GROUP BY pair, manager, step, session_id"
        ") ORDER BY pair, d, t",
        parameters,
    )
    # Splice each affected pair's summed sessions into its run, in order; other runs stay as they are.
    affected = np.unique(summed["pair"])
    starts, ends = (np.searchsorted(single["pair"], affected, side=side) for side in ("left", "right"))
    own_starts, own_ends = (np.searchsorted(summed["pair"], affected, side=side) for side in ("left", "right"))
    pieces: list[Any] = []
    done = 0
    for start, end, own_start, own_end in zip(starts, ends, own_starts, own_ends, strict=True):
        run = {name: np.concatenate([single[name][start:end], summed[name][own_start:own_end]]) for name in single}
        order = np.lexsort((run["t"], run["d"]))
        pieces += [{name: values[done:start] for name, values in single.items()},
                   {name: values[order] for name, values in run.items()}]
        done = end
    pieces.append({name: values[done:] for name, values in single.items()})
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in single}


def _pair_key(client: Client, site: str, managers: list[str], steps: list[str]
              ) -> tuple[str, dict[int, tuple[str, str]]]:
    """How the read keys pairs, and {key: (manager, step)} for every manager x step of the range."""
    for column, of_strings in _PAIR_KEYS:
        names = _pair_names(client, of_strings, managers, steps)
        if names is not None:
            return column, names
    raise StorageUnavailable(f"manager x step pairs of {site} share a hash in session_steps")


def _pair_names(client: Client, key: str, managers: list[str], steps: list[str]) -> dict[int, tuple[str, str]] | None:
    """{pair key: (manager, step)} for every manager x step of the range, None if two share a key."""
    rows = client.query(
        f"SELECT {key}, manager, step FROM (SELECT arrayJoin({{managers:Array(String)}}) AS manager) AS m "
        "CROSS JOIN (SELECT arrayJoin({steps:Array(String)}) AS step) AS s",
        parameters={"managers": managers, "steps": steps},
    ).result_rows
    names = {int(key): (str(manager), str(step)) for key, manager, step in rows}
    return names if len(names) == len(rows) else None


def _day(value: Any) -> Any:
    return value.date() if hasattr(value, "date") and callable(value.date) else value
