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
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from kernel import cluster, small_tables
from kernel.settings import Settings

SERVE_FILE = "serve.json"
ENGINE_STATUS_FILE = "status"
log = logging.getLogger(__name__)


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
    if settings.clickhouse_cluster:
        return _connect_cluster(settings)
    return _connect_server(settings.clickhouse_url or "", settings.database)


def make_private_dir(path: Path) -> None:
    """Create `path` for its owner only (0700), or take group and other access off it.

    The engine's files hold the sites' secrets and the accounts' password hashes, the spool holds
    tracked events; with the directory private, no other local user reaches any file inside,
    whatever the files' own modes. The `stepwatch` command also starts with umask 077.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            path.chmod(mode & 0o700)
        except OSError as exc:
            raise StorageUnavailable(f"{path} is open to other users (mode {mode:o}) and cannot be made "
                                     f"private: {exc.strerror or exc}") from None
        log.warning("%s was open to other users (mode %o); it is now %o", path, mode, mode & 0o700)


def _connect_embedded(settings: Settings) -> Client:
    data_dir = settings.data_dir.resolve()
    make_private_dir(data_dir)
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


def _connect_server(url: str, default_database: str, query_settings: dict[str, Any] | None = None) -> Client:
    database = _database_of(url, default_database)
    try:
        bootstrap = clickhouse_connect.get_client(dsn=url, database="default")
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {_identifier(database)}")
        bootstrap.close()
        return clickhouse_connect.get_client(dsn=url, database=database, settings=query_settings or {})
    except (ClickHouseError, OSError) as exc:
        raise StorageUnavailable(f"cannot reach ClickHouse at {_redact(url)}: {exc}") from exc


def _database_of(url: str, default_database: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).path.strip("/") or default_database


def _connect_cluster(settings: Settings) -> Client:
    """A client on the node of STEPWATCH_CLICKHOUSE_URL that reads and writes the cluster's Distributed
    tables (kernel/cluster.py), and sends what those cannot run to the local tables of every node."""
    import functools

    url = settings.clickhouse_url or ""
    database = _database_of(url, settings.database)
    layout = cluster.Layout(settings.clickhouse_cluster or "", database, settings.clickhouse_keeper)
    client = _connect_server(url, database, cluster.QUERY_SETTINGS)
    nodes: list[Client] = []

    def node_clients() -> list[Client]:
        if not nodes:
            nodes.extend(_connect_server(node, database) for node in settings.node_urls)
        return nodes

    on = cluster.Cluster(layout, node_clients)
    cluster.register(client, on)
    client.command = functools.partial(_cluster_command, client.command, on)  # type: ignore[method-assign]
    client.query = functools.partial(_cluster_query, client.query, on)  # type: ignore[method-assign]
    return client


def _cluster_query(query: Any, on: cluster.Cluster, sql: str, *args: Any, **kwargs: Any) -> Any:
    """client.query on a cluster: a read of the small tables alone goes to the first shard's node."""
    routed = on.first_shard_read(sql)
    if routed is None:
        return query(sql, *args, **kwargs)
    node, local = routed
    return node.query(local, *args, **kwargs)


def _cluster_command(command: Any, on: cluster.Cluster, cmd: str, *args: Any, **kwargs: Any) -> Any:
    """client.command on a cluster: a delete or another mutation runs on every node's local table,
    a read of the small tables alone on the first shard's node."""
    routed = on.first_shard_read(cmd)
    if routed is not None:
        return routed[0].command(routed[1], *args, **kwargs)
    local = on.layout.mutation(cmd)
    if local is None:
        return command(cmd, *args, **kwargs)
    result = None
    for node in on.node_clients():
        try:
            result = node.command(local, *args, **kwargs)
        except (ClickHouseError, OSError) as exc:
            raise StorageUnavailable(f"{local.split()[0]} on a node of the cluster failed: {exc}") from exc
    return result


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
    "attributes", "tracker", "source",
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
        self.memory = small_tables.Memory()  # the small tables this process read (small_tables.py)
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
        import contextvars
        import functools

        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the request's small-tables snapshot goes along (small_tables.py)
        return await loop.run_in_executor(self._executor, functools.partial(context.run, self.call, fn, *args,
                                                                            **kwargs))

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


# Each visit once, as its latest report: the row the `visits` view (FINAL) would keep, i.e. per sorting
# key of step_visits the highest seq (a replay of the same seq: the later arrival). LIMIT 1 BY in the
# table's own order does that as the rows stream by: a seventh of the time FINAL takes, which cannot
# prune step_visits by day (its key puts the day after the manager and step). The tail of a read of
# step_visits that selects manager, step, started_at, visit_id, seq and received_at among its columns.
LATEST_REPORTS = ("ORDER BY manager, step, toDate(started_at), visit_id, seq DESC, received_at DESC "
                  "LIMIT 1 BY manager, step, toDate(started_at), visit_id")


# session_paths (migration 0024): per site, day, manager and session, its stays in order, as the flow
# page reads them. The same visits as session_steps (each as its latest report), sorted by start,
# then step (as analysis/paths.py orders ties); `keep` marks the first visit of each run of one step,
# where arraySplit cuts the times to sum them per stay.
_SESSION_PATHS_REFRESH = """
    INSERT INTO session_paths (site, day, manager, session_id, steps, starts, visible_ms, active_ms, wall_ms,
                               computed_at)
    SELECT {site:String}, day, manager, session_id, arrayFilter((x, k) -> k, s0, keep),
           arrayFilter((x, k) -> k, t0, keep),
           arrayMap(x -> arraySum(x), arraySplit((x, k) -> k, v.3, keep)),
           arrayMap(x -> arraySum(x), arraySplit((x, k) -> k, v.4, keep)),
           arrayMap(x -> arraySum(x), arraySplit((x, k) -> k, v.5, keep)), {at:DateTime64(6, 'UTC')}
    FROM (
        SELECT day, manager, session_id,
               arraySort(groupArray((toUnixTimestamp64Milli(started_at), step, toUInt64(active_ms) + idle_ms,
                                     toUInt64(active_ms), toUInt64(active_ms) + idle_ms + hidden_ms))) AS v,
               v.1 AS t0, v.2 AS s0, arrayMap((s, p) -> s != p, s0, arrayPushFront(arrayPopBack(s0), '')) AS keep
        FROM (
            SELECT manager, step, toDate(started_at) AS day, visit_id, session_id, started_at, active_ms, idle_ms,
                   hidden_ms
            FROM step_visits
            WHERE site = {site:String} AND toDate(started_at) IN {days:Array(Date)}
            """ + LATEST_REPORTS + """
        )
        GROUP BY day, manager, session_id
    )
"""


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
    # A session's attributes come with its start event (session_steps.attributes), so start events
    # move the watermark too: one that arrives after its visits' day was refreshed has that day and
    # the next (a session past midnight) recomputed, but not a day still to come, whose visits will
    # bring it. Most start events come with their visits, on the same days.
    new = client.query(
        "SELECT toString(least(max(received_at), now64(3) - INTERVAL 1 SECOND), 'UTC'), "
        "groupUniqArray(day), toString(now64(6, 'UTC')) FROM ("
        "  SELECT received_at, toDate(started_at) AS day FROM step_visits "
        "  WHERE site = {site:String} AND received_at > {mark:DateTime64(3, 'UTC')} "
        "  UNION ALL "
        "  SELECT received_at, arrayJoin([toDate(at), toDate(at) + 1]) AS day FROM session_events "
        "  WHERE site = {site:String} AND received_at > {mark:DateTime64(3, 'UTC')} AND action = 'start' "
        "    AND notEmpty(attributes) AND day <= today())",
        parameters={"site": site, "mark": mark or "1970-01-01 00:00:00"},
    ).result_rows[0]
    latest, days, computed_at = new
    days = sorted(days)
    if not days:
        return 0
    # Each visit counted once, as its latest report (LATEST_REPORTS). A few days per statement keep the
    # memory small when a whole history arrives at once.
    for first in range(0, len(days), REFRESH_DAYS_PER_STATEMENT):
        chunk = days[first:first + REFRESH_DAYS_PER_STATEMENT]
        client.command(
            """
            INSERT INTO session_steps (site, day, manager, step, session_id, attributes, visible_ms, active_ms,
                                       wall_ms, computed_at)
            SELECT {site:String}, v.day, v.manager, v.step, v.session_id, s.started_with, v.visible, v.active, v.wall,
                   {at:DateTime64(6, 'UTC')}
            FROM (
                SELECT day, manager, step, session_id, sum(active_ms + idle_ms) AS visible, sum(active_ms) AS active,
                       sum(active_ms + idle_ms + hidden_ms) AS wall
                FROM (
                    SELECT manager, step, toDate(started_at) AS day, visit_id, session_id, active_ms, idle_ms,
                           hidden_ms
                    FROM step_visits
                    WHERE site = {site:String} AND toDate(started_at) IN {days:Array(Date)}
                    """ + LATEST_REPORTS + """
                )
                GROUP BY day, manager, step, session_id
            ) AS v
            LEFT JOIN (
                -- each session's declared attributes as name=value&name=value: its (first) start
                -- event's, started the day before its visits at the earliest
                SELECT session_id, argMin(arrayStringConcat(arrayMap(k -> concat(k, '=', attributes[k]),
                                                     arraySort(mapKeys(attributes))), '&'), at) AS started_with
                FROM session_events
                WHERE site = {site:String} AND action = 'start' AND notEmpty(attributes)
                  AND at >= {starts:DateTime64(3, 'UTC')} AND at < {ends:DateTime64(3, 'UTC')}
                GROUP BY session_id
            ) AS s ON v.session_id = s.session_id
            """,
            parameters={"site": site, "days": chunk, "at": computed_at,
                        "starts": datetime.combine(chunk[0] - timedelta(days=1), time.min, UTC),
                        "ends": datetime.combine(chunk[-1] + timedelta(days=1), time.min, UTC)},
        )
        client.command(_SESSION_PATHS_REFRESH,
                       parameters={"site": site, "days": days[first:first + REFRESH_DAYS_PER_STATEMENT],
                                   "at": computed_at})
    # The older rows go in the background (a lightweight delete waits for running merges of the
    # partition, seconds after an insert); until they are gone the reader keeps the newest row.
    # A day seen for the first time (most days) has none: no delete, whose mutation would read
    # every part of the table.
    older = "site = {site:String} AND day IN {days:Array(Date)} AND computed_at < {at:DateTime64(6, 'UTC')}"
    parameters = {"site": site, "days": days, "at": computed_at}
    if client.command(f"SELECT count() FROM session_steps WHERE {older}", parameters=parameters):
        # pair_days (migration 0014) holds the same refreshes, copied by its materialized view
        for table in ("pair_days", "session_paths", "session_steps"):
            client.command(f"DELETE FROM {table} WHERE {older}", parameters=parameters,
                           settings={"lightweight_deletes_sync": 0})
    client.command("INSERT INTO analysis_state (site, watermark) SELECT {site:String}, {mark:DateTime64(3, 'UTC')}",
                   parameters={"site": site, "mark": latest})
    return len(days)


def session_step_times(client: Client, site: str, since: Any, until: Any, metric: str = "visible", *,
                       step: str | None = None, managers: list[str] | None = None) -> list[PairTimes]:
    """Per manager x step, the time of each service session on the step, for sessions from `since`
    (a date, included) to `until` (a date, excluded), as of the last refresh_session_steps.

    A session's time on a step is the sum of its visits to the step within the range (a manager
    may come back to a step within one session, or a session may go on past midnight), each visit
    counted once, dated by its first day in the range. Values travel as numeric columns (numpy),
    not as Python lists: a 28-day window of 10 million visits a quarter is millions of sessions.
    Pairs come ordered by manager and step; within a pair, sessions by day, then time. With `step`,
    only that step's pairs are read (a coaching evaluation needs one step: an eighth of the work);
    with `managers`, only theirs (a plan needs one team's).
    """
    import numpy as np

    since, until = _day(since), _day(until)
    parameters: dict[str, Any] = {"site": site, "since": since, "until": until, "step": step or "",
                                  "managers": sorted(managers or [])}
    column = METRIC_COLUMNS[metric]
    rng = (_RANGE + (" AND step = {step:String}" if step else "")
           + (" AND manager IN {managers:Array(String)}" if managers is not None else ""))
    # who is in the range, and its longest session (GROUP BY on LowCardinality: dictionary work)
    found: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for kind, value in client.query(
        f"SELECT 1, toString(manager) FROM session_steps WHERE {rng} GROUP BY manager UNION ALL "
        f"SELECT 2, toString(step) FROM session_steps WHERE {rng} GROUP BY step UNION ALL "
        f"SELECT 3, toString(max({column})) FROM session_steps WHERE {rng}",
        parameters=parameters,
    ).result_rows:
        found[kind].append(value)
    if not found[1]:
        return []
    if len(found[1]) * len(found[2]) < 1 << _PAIR_BITS:  # every manager x step: a superset, cheap
        names = sorted((manager, step) for manager in found[1] for step in found[2])
    else:  # a large site: the pairs that are there
        names = sorted(client.query(f"SELECT DISTINCT toString(manager), toString(step) FROM session_steps "
                                    f"WHERE {rng}", parameters=parameters).result_rows)
    pair, keys = _pair_key(client, site, names)
    if len(names) < 1 << _PAIR_BITS and (until - since).days <= 1 << _DAY_BITS and int(found[3][0]) < 1 << _TIME_BITS:
        index, days, times = _read_packed(client, rng, pair, keys, column, parameters)
    else:  # a site, a range or a session too large to pack: ClickHouse does all of it
        index, days, times = _read_sorted(client, rng, pair, keys, column, parameters)
    bounds = np.searchsorted(index, np.arange(len(names) + 1, dtype=index.dtype))  # each pair's run
    day_values = np.datetime64(since, "D") + days.astype("timedelta64[D]")
    return [PairTimes(*names[number], times[start:end], day_values[start:end])
            for number, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if end > start]


def daily_step_medians(client: Client, site: str, step: str, since: Any, until: Any, *, own: str,
                       others: list[str], metric: str = "visible") -> dict[tuple[date, bool], float]:
    """For a chart: the median session time on `step` per day from `since` (included) to `until`
    (excluded), of manager `own` (key (day, True)) and of the managers `others` pooled (key (day,
    False)), as of the last refresh_session_steps.

    Computed in ClickHouse from pair_days (a day's session times per manager x step, as arrays;
    migration 0014), each day as its newest refresh (older_refreshes_left_out): a coaching assignment's page
    took 100 ms over session_steps' rows, 15 here. A session past midnight counts on each
    of its days here (session_step_times sums it on its first), a difference a picture does not show;
    verdicts use session_step_times.
    """
    column = METRIC_COLUMNS[metric]
    newest_only, newest = older_refreshes_left_out(client, site, _day(since), _day(until) - timedelta(days=1))
    rows = client.query(
        f"SELECT day, manager = {{own:String}} AS mine, quantileExactInclusiveArray(0.5)({column}) "
        f"FROM pair_days WHERE {_RANGE} AND step = {{step:String}} {newest_only} "
        "AND manager IN {managers:Array(String)} GROUP BY day, mine",
        parameters={"site": site, "since": _day(since), "until": _day(until), "step": step, "own": own,
                    "managers": [own, *others], **newest},
    ).result_rows
    return {(day, bool(mine)): float(median) for day, mine, median in rows}


def pair_day_times(client: Client, site: str, since: Any, until: Any, metric: str = "visible", *, step: str,
                   managers: list[str]) -> list[PairTimes]:
    """Per manager of `managers` on `step`, each session's time with its day, from `since` (included)
    to `until` (excluded), as of the last refresh_session_steps; by manager, then day, then time.

    Read from pair_days (one row of a day's session times per pair, as an array), each day as its
    newest refresh: a team's 28 days on a step are some 700 rows where session_step_times reads a row
    per session and asks first who is in the range (at 10 million visits, one query of 25 ms on a
    cluster of two shards against two of 60-80 ms). A session past midnight counts on each of its
    days here, where session_step_times sums its days: for what changes little by it, such as a plan's
    volume and spread of sessions.
    """
    import numpy as np

    column = METRIC_COLUMNS[metric]  # a column chosen by name: nothing from outside enters the SQL
    since, until = _day(since), _day(until)
    if not managers or until <= since:
        return []
    newest_only, newest = older_refreshes_left_out(client, site, since, until - timedelta(days=1))
    rows = client.query(
        f"SELECT toString(manager), day, arraySort({column}) FROM pair_days WHERE {_RANGE} {newest_only} "
        f"AND step = {{step:String}} AND manager IN {{managers:Array(String)}} AND notEmpty({column}) "
        "ORDER BY manager, day",
        parameters={"site": site, "since": since, "until": until, "step": step, "managers": sorted(managers),
                    **newest},
    ).result_rows
    by_manager: dict[str, list[tuple[Any, list[int]]]] = {}
    for manager, day, times in rows:
        by_manager.setdefault(manager, []).append((day, times))
    found = []
    for manager, days in by_manager.items():
        times = np.concatenate([np.asarray(t, dtype=np.int64) for _, t in days])
        on = np.repeat(np.array([d for d, _ in days], dtype="datetime64[D]"), [len(t) for _, t in days])
        order = np.lexsort((times, on))  # a day in several rows (an insert in several blocks): in order again
        found.append(PairTimes(manager, step, times[order], on[order]))
    return found


def pair_daily_medians(client: Client, site: str, pairs: list[tuple[str, str]], since: Any, until: Any,
                       metric: str = "visible") -> dict[tuple[str, str], tuple[Any, Any]]:
    """For each (manager, step) of `pairs`, the median session time of each day with sessions from
    `since` (included) to `until` (excluded), as of the last refresh_session_steps: (days as numpy
    datetime64[D], ascending; medians as floats). What dates a drawdown's start on a longer
    history than the sessions read; a pair without such days is left out.

    Read from pair_days (one row of a day's session times per pair, as an array), each day as its
    newest refresh, each row's median taken in ClickHouse by sorting its array: no grouping, about
    50 ms for 400 pairs and 62 days of 10 million visits a quarter (with quantileExactInclusiveArray
    grouped by pair and day, 1,600 pairs took 400-800 ms). A day split over several rows (an insert
    in several blocks) is grouped exactly, on its own. A session past midnight counts on each of its
    days here, as in daily_step_medians.
    """
    import numpy as np

    column = METRIC_COLUMNS[metric]
    since, until = _day(since), _day(until)
    names = sorted(set(pairs))
    if not names or until <= since:
        return {}
    key, keys = _pair_key(client, site, names)
    newest_only, newest = older_refreshes_left_out(client, site, since, until - timedelta(days=1))
    parameters = {"site": site, "since": since, "until": until, "keys": keys, **newest}
    rows = f"FROM pair_days WHERE {_RANGE} {newest_only} AND {key} IN {{keys:Array(UInt64)}} AND notEmpty({column})"
    found = client.query(
        "SELECT k, toUInt16(day - {since:Date}), (s[intDiv(length(s) + 1, 2)] + s[intDiv(length(s) + 2, 2)]) / 2 "
        f"FROM (SELECT {key} AS k, day, arraySort({column}) AS s {rows})",
        parameters=parameters,
    ).result_columns
    if not found or not len(found[0]):
        return {}
    pair_keys = np.array(found[0], dtype=np.uint64)
    offsets = np.array(found[1], dtype=np.int64)
    medians = np.array(found[2], dtype=float)
    order = np.lexsort((offsets, pair_keys))
    pair_keys, offsets, medians = pair_keys[order], offsets[order], medians[order]
    split = np.flatnonzero((pair_keys[1:] == pair_keys[:-1]) & (offsets[1:] == offsets[:-1]))
    if split.size:  # a day in several rows: its median over all of them, grouped exactly
        again = sorted({int(k) for k in pair_keys[split]})
        exact = client.query(
            f"SELECT {key} AS k, toUInt16(day - {{since:Date}}), quantileExactInclusiveArray(0.5)({column}) "
            f"{rows} AND {key} IN {{again:Array(UInt64)}} GROUP BY k, day",
            parameters={**parameters, "again": again},
        ).result_rows
        keep = ~np.isin(pair_keys, np.array(again, dtype=np.uint64))
        pair_keys = np.concatenate([pair_keys[keep], np.array([r[0] for r in exact], dtype=np.uint64)])
        offsets = np.concatenate([offsets[keep], np.array([r[1] for r in exact], dtype=np.int64)])
        medians = np.concatenate([medians[keep], np.array([r[2] for r in exact], dtype=float)])
        order = np.lexsort((offsets, pair_keys))
        pair_keys, offsets, medians = pair_keys[order], offsets[order], medians[order]
    by_key = dict(zip(keys, names, strict=True))
    starts = np.flatnonzero(np.r_[True, pair_keys[1:] != pair_keys[:-1]])
    ends = np.r_[starts[1:], pair_keys.size]
    first = np.datetime64(since, "D")
    return {by_key[int(pair_keys[a])]: (first + offsets[a:b].astype("timedelta64[D]"), medians[a:b])
            for a, b in zip(starts, ends, strict=True)}


# The SQL of session_step_times, put together from these fixed fragments (no value is written in).
_RANGE = "site = {site:String} AND day >= {since:Date} AND day < {until:Date}"
# A refresh rewrites whole days, so each day's newest rows (highest computed_at) are the whole day;
# older ones wait for their delete. The analysis's filter: one query, no gap for a refresh to land in.
_CURRENT = f"(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {_RANGE} GROUP BY day)"


_REFRESHED_TABLES = {"pair_days": "pair_days", "session_paths": "session_paths"}  # by name: nothing else enters the SQL


def older_refreshes_left_out(client: Client, site: str, since: date, until: date, table: str = "pair_days"
                             ) -> tuple[str, dict[str, Any]]:
    """A condition ("AND ...", or "" when there is nothing to leave out) and its parameters that
    read each day of pair_days (or session_paths, whose deletes run on their own) from `since` to
    `until` (both included) as its newest refresh.

    A day holds an older refresh's rows only while the refresh's delete is on its way, so the days
    are found by this check first and the read filters only those: as a subquery of the read (like
    _CURRENT), the filter cost a step's page 27 ms of the 57. The price: a refresh whose rows land
    between this check and the read makes that one answer count its days twice (the medians barely
    move, the session counts double); the next view is right. The analysis reads through _CURRENT,
    which has no such gap for inserts.
    """
    # A page remembers the check while the table is unchanged (kernel/small_tables.py): it changes
    # only when the analysis refreshes, and on a cluster it asks every shard (20-45 ms a page).
    rows = (_newest_pair_days if table == "pair_days" else _newest_session_paths)(client, site, since, until)
    condition = ("AND computed_at = transform(day, {days:Array(Date)}, {newest:Array(DateTime64(6, 'UTC'))}, "
                 "computed_at)") if rows else ""
    return condition, {"days": [r["day"] for r in rows], "newest": [r["newest"] for r in rows]}


def _newest_days(client: Client, table: str, site: str, since: date, until: date) -> list[dict[str, Any]]:
    """The days of `table` from `since` to `until` holding rows of an older refresh, and their newest."""
    return query_rows(
        client,
        f"SELECT day, max(computed_at) AS newest FROM {_REFRESHED_TABLES[table]} "
        "WHERE site = {site:String} AND day >= {since:Date} AND day <= {until:Date} "
        "GROUP BY day HAVING min(computed_at) < newest ORDER BY day",
        {"site": site, "since": since, "until": until},
    )


@small_tables.remembered("pair_days")
def _newest_pair_days(client: Client, site: str, since: date, until: date) -> list[dict[str, Any]]:
    return _newest_days(client, "pair_days", site, since, until)


@small_tables.remembered("session_paths")
def _newest_session_paths(client: Client, site: str, since: date, until: date) -> list[dict[str, Any]]:
    return _newest_days(client, "session_paths", site, since, until)


# How a manager x step pair is keyed in the read: the stored hash, else (if two pairs of the range
# share it, about 1 in 10^13) another hash of the same strings.
_PAIR_KEYS = (("pair", "cityHash64(manager, step)"), ("sipHash64(manager, step)", "sipHash64(manager, step)"))
# The number of each pair (its place in the sorted names), from its key.
# A pair that appeared since the names were read (a refresh in between) gets the number after the
# last, and is left out.
_INDEX = ("transform({pair}, {{keys:Array(UInt64)}}, range(length({{keys:Array(UInt64)}})), "
          "length({{keys:Array(UInt64)}}))")
# One session as one 64-bit number: pair number, day in the range, time. numpy sorts 3 million of
# them in 30 ms, ten times faster than ClickHouse sorts the three columns, and they travel in 8 bytes:
# the whole analysis takes 757 ms at p50 (1,008 p95) packed, 1,076 ms (1,274) with ClickHouse
# sorting (_read_sorted), on 10 million visits (benchmarks/readers.py).
_PAIR_BITS, _DAY_BITS, _TIME_BITS = 16, 10, 38  # 65,536 pairs, 1,024 days, 8.7 years
_PACKED = (f"bitOr(bitOr(bitShiftLeft({_INDEX}, {_DAY_BITS + _TIME_BITS}), "
           f"bitShiftLeft(toUInt64(day - {{{{since:Date}}}}), {_TIME_BITS})), {{column}})")
_REPEATED_AS_PARAMETER = 10_000


def _read_packed(client: Client, rng: str, pair: str, keys: list[int], column: str, parameters: dict[str, Any]
                 ) -> tuple[Any, Any, Any]:
    """(pair number, day in the range, time) of every session of the range, in that order."""
    import numpy as np

    parameters = {**parameters, "keys": keys}
    packed = _PACKED.format(pair=pair, column=column)
    rows = _read_columns(client, f"SELECT {packed} AS packed, session_key FROM session_steps "
                                 f"WHERE {rng} AND {_CURRENT}", parameters, ("packed", "session_key"))
    # Almost every session has one row in the range. The few with more (past midnight, or back on
    # another day) share a session_key: one sort of the keys finds them, and ClickHouse sums them
    # exactly, by their strings (a hash collision only sends two sessions down this path).
    sessions = np.sort(rows["session_key"])
    repeated = np.unique(sessions[1:][sessions[1:] == sessions[:-1]])
    values = rows["packed"]  # a fresh array: sorted in place below
    if repeated.size:
        at = np.searchsorted(repeated, rows["session_key"]).clip(max=repeated.size - 1)
        single = values[repeated[at] != rows["session_key"]]
        keys_sql = _repeated_keys(rng, repeated, parameters)
        summed = _read_columns(
            client,
            f"SELECT bitOr(bitOr(bitShiftLeft({_INDEX.format(pair=pair)}, {_DAY_BITS + _TIME_BITS}), "
            f"bitShiftLeft(toUInt64(min(day) - {{since:Date}}), {_TIME_BITS})), sum({column})) AS packed "
            f"FROM session_steps WHERE {rng} AND {_CURRENT} AND session_key IN {keys_sql} "
            f"GROUP BY {pair}, manager, step, session_id",
            parameters, ("packed",),
        )
        values = np.concatenate([single, summed["packed"]])
    values.sort()
    index = values >> np.uint64(_DAY_BITS + _TIME_BITS)
    days = (values >> np.uint64(_TIME_BITS)) & np.uint64((1 << _DAY_BITS) - 1)
    times = np.bitwise_and(values, np.uint64((1 << _TIME_BITS) - 1), out=values).view(np.int64)
    return index, days, times


def _read_sorted(client: Client, rng: str, pair: str, keys: list[int], column: str, parameters: dict[str, Any]
                 ) -> tuple[Any, Any, Any]:
    """What _read_packed returns, all of it done by ClickHouse: slower, for what cannot be packed."""
    parameters = {**parameters, "keys": keys}
    repeated = (f"(SELECT session_key FROM session_steps WHERE {rng} AND {_CURRENT} GROUP BY session_key "
                "HAVING count() > 1)")
    index = _INDEX.format(pair="pair")
    rows = _read_columns(
        client,
        f"SELECT {index} AS p, toUInt64(d - {{since:Date}}) AS d_, toUInt64(t) AS t_ FROM ("
        f"    SELECT {pair} AS pair, day AS d, {column} AS t FROM session_steps"
        f"    WHERE {rng} AND {_CURRENT} AND session_key NOT IN {repeated}"
        "     UNION ALL"
        f"    SELECT {pair} AS pair, min(day) AS d, sum({column}) AS t FROM session_steps"
        f"    WHERE {rng} AND {_CURRENT} AND session_key IN {repeated}"
        "     GROUP BY pair, manager, step, session_id"
        ") ORDER BY p, d_, t_",
        parameters, ("p", "d_", "t_"),
    )
    return rows["p"], rows["d_"], rows["t_"].view("int64")


def _repeated_keys(rng: str, repeated: Any, parameters: dict[str, Any]) -> str:
    """The SQL for the set of repeated session keys: a parameter, or, if too many, a subquery."""
    if repeated.size <= _REPEATED_AS_PARAMETER:
        parameters["repeated"] = repeated.tolist()
        return "{repeated:Array(UInt64)}"
    return (f"(SELECT session_key FROM session_steps WHERE {rng} AND {_CURRENT} GROUP BY session_key "
            "HAVING count() > 1)")


def _pair_key(client: Client, site: str, names: list[tuple[str, str]]) -> tuple[str, list[int]]:
    """How the read keys pairs, and the key of each of `names`, in order."""
    for column, of_strings in _PAIR_KEYS:
        keys = [int(key) for key, in client.query(
            f"SELECT {of_strings} FROM (SELECT arrayJoin({{names:Array(Tuple(String, String))}}) AS name) "
            "ARRAY JOIN [name.1] AS manager, [name.2] AS step",
            parameters={"names": names},
        ).result_rows]
        if len(set(keys)) == len(keys):
            return column, keys
    raise StorageUnavailable(f"manager x step pairs of {site} share a hash in session_steps")


def _read_columns(client: Client, sql: str, parameters: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The UInt64 columns `names` of `sql`, one numpy array each, read by clickhouse-connect's query_np
    (one 2-D array, column-major: each column is a contiguous view, no copy).

    A reader of the raw Native format written here is faster on the read alone (p50 297 ms against
    342 ms), but the whole analysis's p95 differs by 9% (924 ms against 1,008 ms over 40 calls; 6%
    to 21% in shorter runs), 8% at p50, and a coaching evaluation's read not at all (benchmarks/
    readers.py, 10 million visits, docs/performance.md): not the more than 10% that would earn a
    binary parser of our own.
    """
    import numpy as np

    table = client.query_np(sql, parameters=parameters)
    if table.size == 0:  # no rows: query_np gives a float array of shape (0,)
        return {name: np.empty(0, dtype=np.uint64) for name in names}
    return {name: np.asarray(table[:, number], dtype=np.uint64) for number, name in enumerate(names)}


def _day(value: Any) -> Any:
    return value.date() if hasattr(value, "date") and callable(value.date) else value
