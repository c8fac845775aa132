"""stepwatch on a real ClickHouse server (tests/chserver.py) gives the embedded engine's answers.

What touches storage runs here against one server: the migrations, the demo (seed 7) built, analysed
and coached, the analysis's figures and flags, every page's JSON twin, event-log export and import,
and the collector (a batch posted twice stored once; SIGKILLed under load, its spool replayed: nothing
lost, nothing doubled). tests/test_cluster.py runs the same tests on a cluster of two shards, and
its own on how the rows are spread. Each module starts its servers once (one xdist group).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kernel import migrations, sites, storage, users
from kernel.settings import Settings
from stepwatch import analysis_run, demo
from stepwatch.app import create_app
from stepwatch.eventlog import _export, _import
from tests import chserver
from tests.helpers import http, serve
from tests.web_helpers import PASSWORD, SECRET, login

pytestmark = [pytest.mark.xdist_group("server_mode"), pytest.mark.slow]

CLUSTER = "stepwatch"
# Lists whose order ties on a moment or an id made at random (assignments made in the same millisecond).
UNORDERED = frozenset({"assignments"})
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Backend:
    """The servers of one mode and how to reach them."""

    mode: str  # "server" or "cluster"
    servers: chserver.Servers

    def settings(self, database: str, base: Path, **extra: Any) -> Settings:
        if self.mode == "cluster":  # stepwatch talks to the second node: any node will do
            extra = {"clickhouse_cluster": self.servers.cluster, "clickhouse_nodes": ",".join(self.servers.urls),
                     **extra}
            url = self.servers.urls[-1]
        else:
            url = self.servers.url
        return Settings(clickhouse_url=f"{url}/{database}", data_dir=base, spool_dir=base / "spool",
                        rate_limit_site=0, rate_limit_address=0, **extra)

    def env(self, database: str, base: Path) -> dict[str, str]:
        s = self.settings(database, base)
        env = {"STEPWATCH_CLICKHOUSE_URL": s.clickhouse_url or "", "STEPWATCH_DATA_DIR": str(base),
               "STEPWATCH_SPOOL_DIR": str(base / "spool"), "STEPWATCH_RATE_LIMIT_SITE": "0",
               "STEPWATCH_RATE_LIMIT_ADDRESS": "0", "STEPWATCH_ANALYSIS_INTERVAL_S": "0"}
        if s.clickhouse_cluster:
            env |= {"STEPWATCH_CLICKHOUSE_CLUSTER": s.clickhouse_cluster,
                    "STEPWATCH_CLICKHOUSE_NODES": s.clickhouse_nodes}
        return env


@pytest.fixture(scope="module")
def mode() -> str:
    return "server"


@pytest.fixture(scope="module")
def backend(mode: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    base = tmp_path_factory.mktemp(f"clickhouse-{mode}")
    # STEPWATCH_TEST_CLICKHOUSE_URL / _NODES: servers started elsewhere (.github/workflows/server-mode.yml)
    servers = chserver.from_environment(base, *((2, CLUSTER) if mode == "cluster" else (1, None)))
    try:
        yield Backend(mode, servers)
    finally:
        servers.stop()


@dataclass
class Built:
    settings: Settings
    client: storage.Client


def build_demo(settings: Settings, today: Any) -> storage.Client:
    """What `stepwatch demo` builds (seed 7), plus an admin account this test can sign in with."""
    client = storage.connect(settings)
    migrations.apply_pending(client, settings.retention_days)
    truth = demo.build(client, seed=7, today=today)
    demo.set_bands(client, truth, today, 42)
    demo.analyse_previous_week(client, settings, today)
    analysis_run.analyze(client, settings, only_site=demo.SITE, until=today)
    demo.create_accounts(client, truth)
    demo.seed_coaching(client, settings, truth, today=today)
    users.add_user(client, "probe", "admin", PASSWORD, actor="test")
    users.set_password(client, "manager", PASSWORD, actor="test")  # the demo's manager, for /me
    return client


@pytest.fixture(scope="module")
def demos(backend: Backend, engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Built]]:
    """The demo in the embedded engine (the reference) and in this module's ClickHouse."""
    today = datetime.now(UTC).date()
    database = f"demo_{uuid.uuid4().hex[:8]}"
    embedded = Settings(data_dir=engine_dir, database=database)
    served = backend.settings(database, tmp_path_factory.mktemp("demo"))
    built = {"embedded": Built(embedded, build_demo(embedded, today)),
             backend.mode: Built(served, build_demo(served, today))}
    yield built
    built["embedded"].client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    for b in built.values():
        b.client.close()


def without_ids(value: Any) -> Any:
    """A page's or a row's JSON with what differs between two builds of the same data taken out: ids
    (UUIDs, made at random) and the moments things were written."""
    if isinstance(value, dict):
        moments = ("since", "until") if value.keys() >= {"on", "since", "until"} else ()  # the discovery window
        return {k: sorted(without_ids(v), key=json.dumps) if k in UNORDERED and isinstance(v, list) else without_ids(v)
                for k, v in value.items()
                if not k.endswith(("_at", "_id")) and k not in ("id", "at", "when", "version", "csrf", "tracker")
                and k not in moments}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    if isinstance(value, str):
        return UUID.sub("<id>", value)
    return value


# -- the schema -----------------------------------------------------------------------------------------

def test_every_migration_is_applied_once(backend: Backend, tmp_path: Path) -> None:
    database = f"m_{uuid.uuid4().hex[:8]}"
    settings = backend.settings(database, tmp_path)
    client = storage.connect(settings)
    try:
        applied = migrations.apply_pending(client, settings.retention_days)
        assert [m.version for m in applied] == [m.version for m in migrations.discover()]
        assert migrations.apply_pending(client, settings.retention_days) == []
        assert migrations.applied_versions(client) == {m.version for m in migrations.discover()}
        tables = {t for m in migrations.discover() for t in migrations.created_tables(m)}
        for url in backend.servers.urls:  # on a cluster every node holds the schema
            node = storage.connect(Settings(clickhouse_url=f"{url}/{database}", data_dir=tmp_path))
            found = {name for name, in node.query("SELECT name FROM system.tables WHERE database = currentDatabase()"
                                                  ).result_rows}
            node.close()
            assert tables <= found
            assert {"visits", "service_sessions"} <= found
    finally:
        client.close()


# -- the analysis ---------------------------------------------------------------------------------------

def test_the_analysis_gives_the_embedded_engines_figures(demos: dict[str, Built], mode: str) -> None:
    figures = {}
    for name, built in demos.items():
        saved = analysis_run.saved_stats(built.client, demo.SITE)
        assert saved is not None
        figures[name] = without_ids(json.loads(json.dumps(saved[2], default=str)))
    assert len(figures["embedded"]) > 100
    assert figures[mode] == figures["embedded"]


def test_the_flags_are_the_embedded_engines(demos: dict[str, Built], mode: str) -> None:
    from kernel import flag_store

    flags = {name: sorted((without_ids(json.loads(json.dumps(asdict(f), default=str)))
                           for f in flag_store.current(b.client, demo.SITE)), key=json.dumps)
             for name, b in demos.items()}
    assert flags["embedded"]
    assert flags[mode] == flags["embedded"]


# -- every page's JSON twin -----------------------------------------------------------------------------

PAGES = ("/overview", "/drawdowns", "/managers", "/steps", "/process", "/coaching", "/coaching/catalog",
         "/coaching/effectiveness", "/coaching/new", "/flow")
FOUND = (("/drawdowns", re.compile(r'"(/drawdowns/[^"?#/]+)"')),
         ("/managers", re.compile(r'"(/managers/[^"?#/]+)"')),
         ("/steps", re.compile(r'"(/steps/[^"?#/]+)"')),
         ("/coaching", re.compile(r'"(/coaching/assignments/[^"?#/]+)"')))


async def page_twins(settings: Settings) -> dict[str, Any]:
    """Every page's JSON twin as the admin sees it (the demo's manager: /me), with every page a listing
    links to. Pages named by an id made at random (a drawdown, an assignment) are compared as a set."""
    app = create_app(settings.model_copy(update={"secret_key": SECRET, "analysis_interval_s": 0}))
    async with TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True)) as api:
        response = await login(api, "probe")
        assert response.status in (302, 303), await response.text()
        twins: dict[str, Any] = {}
        paths = list(PAGES)
        for listing, link in FOUND:
            html = await (await api.get(listing)).text()
            paths += sorted(set(link.findall(html)))
        for path in paths:
            response = await api.get("/api/v1" + path)
            assert response.status == 200, (path, await response.text())
            page = without_ids(await response.json())
            if UUID.search(path):
                twins.setdefault(UUID.sub("<id>", path), []).append(page)
            else:
                twins[path] = page
        audit = await api.get("/api/v1/audit")
        assert audit.status == 200
        api.session.cookie_jar.clear()
        await login(api, "manager")
        response = await api.get("/api/v1/me")
        assert response.status == 200, await response.text()
        twins["/me"] = without_ids(await response.json())
    return {path: sorted(page, key=json.dumps) if UUID.sub("", path) != path or "<id>" in path else page
            for path, page in twins.items()}


def test_every_pages_json_twin_is_the_embedded_engines(demos: dict[str, Built], mode: str) -> None:
    twins = {name: asyncio.run(page_twins(b.settings)) for name, b in demos.items()}
    assert len(twins["embedded"]) > len(PAGES)
    assert twins[mode].keys() == twins["embedded"].keys()
    for path, page in twins["embedded"].items():
        assert twins[mode][path] == page, path


# -- event logs -----------------------------------------------------------------------------------------

def comparable(log: str) -> list[str]:
    """An exported log's rows without their case and session ids (the demo's are made at random) in order."""
    header, *rows = log.splitlines()
    assert header.startswith("case,session_id,")
    return sorted(row.split(",", 2)[2] for row in rows)


def test_export_and_import_give_the_embedded_engines_log(demos: dict[str, Built], mode: str, tmp_path: Path) -> None:
    since = datetime.now(UTC).date() - timedelta(days=10)
    logs = {}
    for name, built in demos.items():
        out = io.StringIO()
        assert _export.export_csv(built.client, demo.SITE, out, since=since) > 1000
        logs[name] = out.getvalue()
    assert comparable(logs[mode]) == comparable(logs["embedded"])
    # the log imported as another site reads back the same on both
    path = tmp_path / "log.csv"
    path.write_text(logs[mode])
    again = {}
    for name, built in demos.items():
        sites.add_site(built.client, "again", ["https://crm.example.com"], actor="test")
        summary = _import.import_log(built.client, built.settings, path, _import.ImportOptions(site="again"))
        assert summary.bad_rows == 0 and summary.visits > 1000
        out = io.StringIO()
        _export.export_csv(built.client, "again", out, since=since)
        again[name] = out.getvalue()
    assert comparable(again[mode]) == comparable(again["embedded"])


# -- the collector --------------------------------------------------------------------------------------

def new_site(backend: Backend, tmp_path: Path) -> tuple[dict[str, str], str, storage.Client]:
    database = f"c_{uuid.uuid4().hex[:8]}"
    settings = backend.settings(database, tmp_path)
    client = storage.connect(settings)
    migrations.apply_pending(client, settings.retention_days)
    key = sites.add_site(client, "crm", ["https://crm.example.com"], actor="test").key
    return backend.env(database, tmp_path), key, client


def visits(count: int, manager: str, start: int = 0) -> list[dict[str, Any]]:
    now = int(time.time() * 1000) - 3_600_000
    return [{"type": "visit", "visit_id": str(uuid.UUID(int=start + n + 1)), "seq": 1, "final": True,
             "manager": manager, "session_id": f"s-{manager}-{(start + n) // 5}", "process": "sales",
             "step": ("offer", "contract", "payment")[n % 3], "started_at": now + n, "active_ms": 1000 + n,
             "idle_ms": 0, "hidden_ms": 0} for n in range(count)]


def stored(client: storage.Client) -> tuple[int, int]:
    """(visits as readers see them, distinct visit ids) in the collector's database."""
    return tuple(client.query("SELECT count(), uniqExact(visit_id) FROM visits").result_rows[0])  # type: ignore[return-value]


def wait_for_empty_spool(url: str) -> None:
    for _ in range(600):  # 30 s: a loaded machine
        if http("GET", url + "/readyz")[1].get("spool_events") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the spool did not drain")


def test_a_batch_posted_twice_is_stored_once(backend: Backend, tmp_path: Path) -> None:
    env, key, client = new_site(backend, tmp_path)
    batch = {"site": key, "events": visits(60, "m-1") + visits(60, "m-2", 1000)}
    with serve(env, tmp_path) as collector:
        for _ in range(2):
            status, body = http("POST", collector.url + "/v1/events", batch, {"Content-Type": "text/plain"})
            assert (status, body["accepted"]) == (200, 120), collector.logs()
        wait_for_empty_spool(collector.url)
    assert stored(client) == (120, 120)
    client.close()


def test_a_collector_killed_under_load_loses_and_doubles_nothing(backend: Backend, tmp_path: Path) -> None:
    env, key, client = new_site(backend, tmp_path)
    acknowledged: list[str] = []
    stop = threading.Event()

    def post(url: str, manager_base: int) -> None:
        n = 0
        while not stop.is_set():
            batch = visits(25, f"m-{manager_base + n % 7}", manager_base * 100_000 + n * 25)
            try:
                status, _ = http("POST", url + "/v1/events", {"site": key, "events": batch},
                                 {"Content-Type": "text/plain"})
            except OSError:
                return  # the collector is gone
            if status == 200:
                acknowledged.extend(v["visit_id"] for v in batch)
            n += 1

    with serve(env, tmp_path) as collector:
        workers = [threading.Thread(target=post, args=(collector.url, base)) for base in (1, 2)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 1500:
            assert time.monotonic() < deadline, collector.logs()
            time.sleep(0.01)
        collector.proc.send_signal(signal.SIGKILL)
        collector.proc.wait()
        stop.set()
        for w in workers:
            w.join()
    with serve(env, tmp_path) as collector:  # replays what the killed one left in its spool
        # the trackers, never told, send their last batches again
        again = {"site": key, "events": visits(25, "m-1", 100_000)}
        assert http("POST", collector.url + "/v1/events", again, {"Content-Type": "text/plain"})[0] == 200
        wait_for_empty_spool(collector.url)
        ids = {v for v, in client.query("SELECT visit_id FROM visits").result_rows}
    assert set(acknowledged) <= {str(i) for i in ids}
    count, distinct = stored(client)
    assert count == distinct  # nothing doubled
    client.close()


def test_two_collectors_ingest_at_once_and_one_runs_the_analysis(backend: Backend, tmp_path: Path) -> None:
    """Collectors behind a load balancer: each its own data directory (its spool); the analysis runs
    only where STEPWATCH_ANALYSIS_INTERVAL_S > 0, here the first (docs/deploy.md)."""
    env, key, client = new_site(backend, tmp_path)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def post(url: str, base: int, batches: int) -> None:
        for n in range(batches):
            batch = visits(20, f"m-{base}-{n % 3}", base * 100_000 + n * 20)
            status, _ = http("POST", url + "/v1/events", {"site": key, "events": batch}, {"Content-Type": "text/plain"})
            assert status == 200
            with lock:
                acknowledged.extend(v["visit_id"] for v in batch)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    scheduler = {**env, "STEPWATCH_DATA_DIR": str(tmp_path / "a"), "STEPWATCH_SPOOL_DIR": str(tmp_path / "a" / "spool"),
                 "STEPWATCH_ANALYSIS_INTERVAL_S": "1"}
    plain = {**env, "STEPWATCH_DATA_DIR": str(tmp_path / "b"), "STEPWATCH_SPOOL_DIR": str(tmp_path / "b" / "spool")}
    started = time.monotonic()  # the first's analysis runs from its start, so count from before it
    with serve(scheduler, tmp_path / "a") as first, serve(plain, tmp_path / "b") as second:
        workers = [threading.Thread(target=post, args=(url, base, 40))
                   for url, base in ((first.url, 1), (second.url, 2), (first.url, 3), (second.url, 4))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wait_for_empty_spool(first.url)
        wait_for_empty_spool(second.url)
        time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))  # a few of the first's intervals
        elapsed = time.monotonic() - started
        logs = first.logs(), second.logs()
    runs = [sum('"analysis ran"' in line for line in log.splitlines()) for log in logs]
    assert 1 <= runs[0] <= elapsed / 1 + 1 and runs[1] == 0, runs
    assert len(acknowledged) == 3200
    assert stored(client) == (3200, 3200)
    client.close()
