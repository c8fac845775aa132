"""Dashboards benchmark: server time of the pages over 10 million step visits.

    python benchmarks/dashboards.py --visits 10000000 --json

Builds the analysis benchmark's site on a fresh embedded engine (200 managers in 8 teams, 8 steps
with bands, 90 days of visits generated inside ClickHouse, see benchmarks/analysis.py), adds a
service session's start and end events for every session, fills the daily pre-aggregate and runs
the analysis once (flags, stored figures), as `stepwatch serve` would have. Then it serves the
application in this process and times each page as a signed-in admin and director: the time from
sending the request to the last byte of the answer, over loopback (p50 and p95 of --calls calls
after 3 warm-up calls). Pages of other parts are timed too when their routes exist.

With `--servers 1` or `--servers 2` (or `--clickhouse-url`, `--cluster`: benchmarks/servers.py) the
data lives on one ClickHouse server or on a cluster of shards instead of the embedded engine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This folder holds analysis.py, named like the `analysis` package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

PASSWORD = "benchmark password 1"


def _analysis_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("analysis_benchmark", Path(__file__).with_name("analysis.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _servers() -> Any:
    spec = importlib.util.spec_from_file_location("benchmark_servers", Path(__file__).with_name("servers.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def session_events(client: Any, site: str, managers: int, visits: int, days: int, end: datetime, steps: int) -> None:
    """A start and an end event for every session the analysis benchmark generated (same ids, times).

    Inserted in time order, as a collector stores them: from one thread, so each part of
    session_days holds consecutive days. Two insert threads interleaved their blocks, and every
    part then spanned all the days: FINAL had to merge every row of a range (the overview's
    session median for 30 days on two shards: 85 ms against 55 with parts in time order)."""
    sessions = visits // steps
    per_day = max(1, sessions // (managers * days))
    first_day = int((end - timedelta(days=days)).timestamp())
    client.command(f"""
        INSERT INTO session_events (site, event_id, session_id, action, manager, customer, process, at, outcome,
                                    tracker, source)
        SELECT '{site}', generateUUIDv4(number), concat('b-', toString(s)), if(number % 2 = 0, 'start', 'end'),
               concat('m-', leftPad(toString(s % {managers}), 3, '0')), '', 'bench',
               toDateTime64({first_day} + intDiv(s, {managers * per_day}) * 86400 + 9 * 3600
                            + (intDiv(s, {managers}) % {per_day}) * 420
                            + if(number % 2 = 0, 0, 240 + cityHash64(s) % 600), 3, 'UTC'),
               if(number % 2 = 0, '', 'sale'), 'bench', 'bench'
        FROM (SELECT number, intDiv(number, 2) AS s FROM numbers({sessions * 2}))
        SETTINGS max_insert_threads = 1, max_threads = 1
    """)


def build(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from kernel import storage, users
    from kernel.settings import Settings
    from stepwatch import analysis_run

    bench = _analysis_benchmark()
    settings = Settings(data_dir=data_dir, analysis_interval_s=0, **_servers().settings_values(args))
    client = storage.connect(settings)
    site = bench.setup_site(client, settings, args.managers, args.days)
    today = datetime.now(UTC).date()
    users.add_user(client, "ada", "admin", PASSWORD, actor="bench")
    users.add_user(client, "dora", "director", PASSWORD, teams=("team-3",), actor="bench")
    users.add_user(client, "max", "manager", PASSWORD, teams=("team-3",), manager_id="m-003", actor="bench")

    end = datetime(today.year, today.month, today.day, tzinfo=UTC)
    started = time.perf_counter()
    bench.generate(client, site, args.managers, args.visits, args.days, end)
    session_events(client, site, args.managers, args.visits, args.days, end, len(bench.STEPS))
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    runs = analysis_run.analyze(client, settings, until=today - timedelta(days=1), only_site=site)
    analysis_s = time.perf_counter() - started
    facts = {"visits": int(client.command("SELECT count() FROM step_visits")),
             "session_events": int(client.command("SELECT count() FROM session_events")),
             "managers": args.managers, "steps": len(bench.STEPS), "days": args.days,
             "flags": len(runs[0].result.drawdowns), "generate_s": round(generated_s, 1),
             "first_analysis_s": round(analysis_s, 1)}
    client.close()
    return facts


def seed_coaching(settings: Any, assignments_count: int = 40) -> None:
    """A course, a mentor and `assignments_count` coaching assignments (half done 30 days ago and
    evaluated, half open, made from flags where there are any), so the coaching pages have
    something to show; skipped when the data directory has assignments already."""
    from coaching import assignments, catalog, measure
    from coaching.lifecycle import Target
    from kernel import flag_store, storage, users

    client = storage.connect(settings)
    try:
        if assignments.list_assignments(client, "bench"):
            return
        if "tom" not in {u.name for u in users.list_users(client)}:
            users.add_user(client, "tom", "trainer", PASSWORD, actor="bench")
        admin = users.get_user(client, "ada")
        bench = _analysis_benchmark()
        course = catalog.add_course(client, admin, site="bench", title="Offer without detours", steps=bench.STEPS,
                                    expected_minutes=60, self_paced=True, reason="benchmark")
        catalog.set_mentor(client, admin, site="bench", name="tom", steps=bench.STEPS, reason="benchmark")
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        flags = [f for f in flag_store.current(client, "bench") if f.kind == "slow" and f.manager]
        for i in range(assignments_count):
            manager, step = f"m-{i * 5:03d}", bench.STEPS[i % len(bench.STEPS)]
            if i % 2:  # open, from a flag when one is left
                flag = flags.pop() if flags else None
                assignments.assign(client, settings, admin, site="bench", manager=flag.manager if flag else manager,
                                   step=flag.step if flag else step, kind="mentor_meeting", mentor="tom",
                                   due=now.date() + timedelta(days=7), target=Target(200_000, 28),
                                   flag_id=flag.flag_id if flag else "", note="benchmark")
                continue
            assigned = now - timedelta(days=40)
            a = assignments.assign(client, settings, admin, site="bench", manager=manager, step=step, kind="course",
                                   course_id=course.course_id, due=assigned.date() + timedelta(days=5),
                                   target=Target(200_000, 28), note="benchmark", now=assigned)
            assignments.mark_done(client, settings, admin, a.assignment_id, now=assigned + timedelta(days=4))
            measure.evaluate_assignment(client, settings, a.assignment_id, now=now)
    finally:
        client.close()


def record_queries() -> list[tuple[float, str]]:
    """From now on, every query clickhouse-connect sends (an HTTP request to a server, or a call of the
    embedded engine) is appended to the returned list as (ms until its answer began, its SQL's first
    150 characters)."""
    from clickhouse_connect.driver._backend.chdb_backend import ChdbBackend
    from clickhouse_connect.driver._backend.http_sync import HttpSyncBackend

    seen: list[tuple[float, str]] = []

    def timing(method: Any, sql_of: Any) -> Any:
        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                seen.append(((time.perf_counter() - started) * 1000, " ".join(sql_of(*args).split())[:150]))
        return timed

    def http_sql(data: Any, params: dict[str, str], *_: Any) -> str:
        return params.get("query") or (data.decode(errors="replace") if isinstance(data, bytes) else str(data or ""))

    HttpSyncBackend.request = timing(HttpSyncBackend.request, http_sql)  # type: ignore[method-assign]
    ChdbBackend._query_locked = timing(ChdbBackend._query_locked, lambda sql, *_: str(sql))  # type: ignore[method-assign]
    return seen


async def measure(settings: Any, calls: int, since: str, until: str, only: str = "",
                  queries: list[tuple[float, str]] | None = None) -> dict[str, Any]:
    from aiohttp import ClientSession, CookieJar
    from aiohttp.test_utils import TestServer

    from kernel import app_keys, flag_store
    from stepwatch.app import create_app

    app = create_app(settings)
    server = TestServer(app)
    await server.start_server()
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    client = app[app_keys.STORE].client()
    flag = next(f for f in flag_store.current(client, "bench") if f.team == "team-3")
    pages = {
        "ada": [("/overview", "overview"), ("/api/v1/overview", "overview JSON"),
                (f"/overview?since={since}&until={until}", "overview, chosen dates"),
                ("/overview?team=team-3", "overview, one team"), ("/drawdowns", "drawdowns"),
                ("/drawdowns?status=all&sort=age", "drawdowns, any status by age"),
                (f"/drawdowns/{flag.flag_id}", "a drawdown"), ("/process", "process")],
        "dora": [("/overview", "overview (director)"), ("/drawdowns", "drawdowns (director)")],
        "max": [],
    }
    # Pages of other parts, when they exist.
    if "/managers/{manager}" in routes:
        pages["ada"].append(("/managers/m-003", "a manager"))
    if "/steps/{step}" in routes:
        pages["ada"].append(("/steps/offer", "a step"))
    if "/me" in routes:
        pages["max"].append(("/me", "my figures (manager)"))
    if "/audit" in routes:
        pages["ada"].append(("/audit", "audit log"))
    if "/steps" in routes:
        pages["ada"].append(("/steps", "steps"))
    if "/flow" in routes:  # paths and rework: one team over 30 days, and one manager against the team
        pages["ada"] += [(f"/flow?team=team-3&since={since}&until={until}", "flow, one team, 30 days"),
                         (f"/api/v1/flow?team=team-3&since={since}&until={until}", "flow JSON, one team, 30 days"),
                         (f"/flow?manager=m-003&since={since}&until={until}", "flow, one manager, 30 days")]
    # Where a slow manager's extra time goes (the drawdown page's decomposition), in its JSON twin.
    slow = next((f for f in flag_store.current(client, "bench") if f.kind == "slow" and f.manager), None)
    if slow is not None:
        pages["ada"].append((f"/api/v1/drawdowns/{slow.flag_id}", "a drawdown's time split (JSON)"))
    if "/coaching" in routes:
        from coaching import assignments

        listed = assignments.list_assignments(client, "bench")
        evaluated = next(a for a in listed if a.state == "evaluated")
        open_flag = next(f for f in flag_store.current(client, "bench") if f.kind == "slow" and f.status == "open")
        pages["ada"] += [("/coaching", "coaching board"), ("/coaching/catalog", "coaching catalog"),
                         ("/coaching/effectiveness", "coaching effectiveness"),
                         (f"/coaching/assignments/{evaluated.assignment_id}", "an evaluated assignment"),
                         (f"/coaching/new?flag={open_flag.flag_id}", "assign from a flag")]
        pages["tom"] = [("/coaching", "coaching board (trainer)")]
    results: dict[str, Any] = {}
    try:
        for name, listed in pages.items():
            async with ClientSession(base_url=str(server.make_url("")), cookie_jar=CookieJar(unsafe=True)) as http:
                form = await (await http.get("/login")).text()
                token = re.search(r'name="csrf" value="([^"]+)"', form)
                assert token, "no login form"
                signed_in = await http.post("/login", data={"name": name, "password": PASSWORD, "csrf": token.group(1)},
                                            allow_redirects=False)
                assert signed_in.status == 303, f"{name} could not sign in: {signed_in.status}"
                for path, label in listed:
                    if only and only not in label:
                        continue
                    timings, status, size = [], 0, 0
                    for i in range(calls + 3):
                        if queries is not None:
                            queries.clear()
                        started = time.perf_counter()
                        async with http.get(path) as response:
                            body = await response.read()
                            status, size = response.status, len(body)
                        if i >= 3:
                            timings.append((time.perf_counter() - started) * 1000)
                    timings.sort()
                    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
                    results[label] = {"path": path, "status": status, "bytes": size,
                                      "p50_ms": round(statistics.median(timings), 1), "p95_ms": round(p95, 1)}
                    if queries is not None:  # the last call's queries
                        results[label]["queries"] = [(round(ms, 1), sql) for ms, sql in queries]
    finally:
        await server.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=10_000_000)
    parser.add_argument("--managers", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--data-dir", help="keep the data here (built once, reused when it exists)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", default="", help="time only the pages whose label contains this")
    parser.add_argument("--queries", action="store_true",
                        help="list each page's queries to a server with their times (the last call's)")
    servers = _servers()
    servers.add_arguments(parser)
    args = parser.parse_args()

    from kernel.settings import Settings

    work = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="sw-dashboards-")) / "data"
    work.mkdir(parents=True, exist_ok=True)
    running = servers.start(args, work.parent if not args.data_dir else work)
    try:
        facts_file = work / "benchmark.json"
        kept = json.loads(facts_file.read_text()) if facts_file.exists() else None
        # servers started here keep their data under --data-dir too (its clickhouse/ folder)
        if kept is not None and kept.get("store") == servers.mode(args):
            facts = kept
            args.database = facts.get("database", args.database)
        else:
            facts = {"store": servers.mode(args), **build(work, args),
                     **({"database": args.database} if args.database else {})}
            facts_file.write_text(json.dumps(facts))
        settings = Settings(data_dir=work, analysis_interval_s=0, secret_key="benchmark-secret-key-0123456789",
                            **servers.settings_values(args))
        seed_coaching(settings)
        today = datetime.now(UTC).date()
        timings = asyncio.run(measure(settings, args.calls, str(today - timedelta(days=30)),
                                      str(today - timedelta(days=1)), args.only,
                                      record_queries() if args.queries else None))
    finally:
        if running is not None:
            running.stop()
        if not args.data_dir:
            shutil.rmtree(work.parent, ignore_errors=True)
    result = {**facts, "pages": timings}
    if args.json:
        print(json.dumps(result))
        return
    for key, value in facts.items():
        print(f"{key:>20}: {value}")
    print(f"{'page':<34} {'status':>6} {'kB':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for label, t in timings.items():
        print(f"{label:<34} {t['status']:>6} {t['bytes'] / 1024:>7.0f} {t['p50_ms']:>8} {t['p95_ms']:>8}")
        for ms, sql in t.get("queries", []):
            print(f"{'':>6}{ms:>8.1f} ms  {sql}")


if __name__ == "__main__":
    main()
