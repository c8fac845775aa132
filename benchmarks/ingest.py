"""Ingest benchmark: durable events per second through the real collector on the embedded engine.

    python benchmarks/ingest.py --seconds 20 --json

Starts `stepwatch serve` on a fresh data directory (rate limits off), and posts batches of 50
realistic events (visits with checkpoints, session starts and ends) from concurrent keep-alive
connections on loopback with `wrk` (Debian package; installed if missing). A 200 means the events
are durable (fsynced in the collector's spool, the default `wal` acknowledgement; they reach
ClickHouse within STEPWATCH_FLUSH_MS), so events_per_s is durable throughput. The warm-up lasts
until the analysis that `serve` schedules 5 s after its start has run once (it then runs every
5 minutes, so a 20 s window right after start would otherwise always contain it). In the same
run and on the same machine it measures two references: a bare aiohttp handler that only reads
the same bodies (bare_requests_per_s), and clickhouse-connect inserting the same rows directly
into the embedded engine in batches like the collector's group commits (raw_insert_rows_per_s).
It also reports the machine's load average before the run and the collector's CPU time per
request (all its threads), which moves less than the rates when other work shares the machine.

`ceiling_vs_bare` bounds the collector_vs_bare any collector on this engine and these cores could
reach: the cores' CPU time divided by the least a durable request needs (the bare handler's CPU per
request, the decoding and checking of its events, the engine's CPU to insert their rows, and wrk's
CPU per request), against the bare handler's rate. It leaves out the spool, its fsync and all
bookkeeping, so the real collector stays below it.

With `--servers 1` (or `--clickhouse-url`; `--servers 2` / `--cluster` for a cluster:
benchmarks/servers.py) the collector, and the raw insert reference, write to a ClickHouse server
instead of the embedded engine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STEPS = ["identification", "needs", "products", "offer", "contract", "payment", "closing"]

BARE_APP = textwrap.dedent("""
    import sys
    from aiohttp import web

    async def handle(request):
        await request.read()
        return web.json_response({"accepted": 50, "rejected": []})

    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/v1/events", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
""")

WRK_SCRIPT = textwrap.dedent("""
    local bodies = {}
    for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
    local i = 0
    request = function()
      i = i % #bodies + 1
      return wrk.format("POST", "/v1/events", {["Content-Type"] = "text/plain",
                        ["Origin"] = "https://crm.example.com"}, bodies[i])
    end
    done = function(summary, latency, requests)
      local non2xx = summary.errors.status
      io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
        .. '"non2xx": %d, "socket_errors": %d}\\n', summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99), non2xx,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
    end
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_bodies(site_key: str, count: int, per_batch: int, seed: int = 1) -> list[dict[str, Any]]:
    """Batches as a tracker sends them: visits of one manager, some checkpoints, session events."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    bodies = []
    for _ in range(count):
        manager = f"manager-{rng.randint(1, 200)}"
        session = str(uuid.uuid4())
        events: list[dict[str, Any]] = [{
            "type": "session", "event_id": str(uuid.uuid4()), "action": "start", "session_id": session,
            "manager": manager, "customer": uuid.uuid4().hex * 2, "process": "sales", "at": now - 3_600_000,
            "outcome": "", "tracker": "1.0.0"}]
        while len(events) < per_batch:
            step = rng.choice(STEPS)
            visit_id = str(uuid.uuid4())
            active = int(rng.lognormvariate(11, 0.6))
            for seq in range(rng.randint(1, 3)):
                if len(events) >= per_batch:
                    break
                events.append({
                    "type": "visit", "visit_id": visit_id, "seq": seq, "final": False, "manager": manager,
                    "session_id": session, "customer": uuid.uuid4().hex * 2, "process": "sales", "step": step,
                    "path": f"/clients/:customer/{step}", "started_at": now - rng.randint(60_000, 3_000_000),
                    "active_ms": active * (seq + 1) // 3, "idle_ms": rng.randint(0, 60_000),
                    "hidden_ms": rng.randint(0, 20_000), "tracker": "1.0.0"})
        bodies.append({"site": site_key, "events": events})
    return bodies


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def run_wrk(url: str, seconds: float, connections: int, bodies_path: Path, script: Path) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODIES": str(bodies_path)}
    before = own_cpu_seconds(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [ensure_wrk(), "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script), url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    result = json.loads(line.removeprefix("WRKJSON "))
    result["requests_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    used = own_cpu_seconds(resource.RUSAGE_CHILDREN) - before  # wrk's own CPU (the only child waited for)
    result["cpu_us_per_request"] = used * 1e6 / max(1, result["requests"])
    return result


def wait_for(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def own_cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU time of this process (all threads), or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    return memory_mb(pid)["VmHWM"]


def memory_mb(pid: int) -> dict[str, float]:
    """The process's memory figures in MB: VmHWM (peak resident), RssAnon (heap, stacks: what it
    allocated), RssFile (pages of mapped files, e.g. the engine's shared library, shared with the
    page cache)."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "RssAnon", "RssFile"):
            figures[name] = int(value.split()[0]) / 1024
    return figures


def _servers() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_servers", Path(__file__).with_name("servers.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_insert_rate(bodies: list[dict[str, Any]], seconds: float, batch_rows: int,
                    store: dict[str, Any] | None = None) -> tuple[float, float, float]:
    """clickhouse-connect inserting the collector's rows straight into the embedded engine: rows per
    second, CPU microseconds per row (this process, all threads: the engine's included), and the CPU
    microseconds the collector's own decoding, checking and encoding of one request's events takes."""
    from collector.events import Validator, check_events, parse_batch
    from kernel import migrations, storage
    from kernel.settings import Settings

    store = dict(store or {})
    if store.get("clickhouse_url"):  # a database of its own on the same server
        store["clickhouse_url"] = store["clickhouse_url"] + "_raw"
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="sw-raw-")), rate_limit_site=0, rate_limit_address=0,
                        **store)
    client = storage.connect(settings)
    migrations.apply_pending(client)
    visits: list[bytes] = []
    sessions: list[bytes] = []
    raw_bodies = [json.dumps(body).encode() for body in bodies]
    for body in raw_bodies:
        checked = check_events(parse_batch(body), site="bench", settings=settings)
        visits += checked.visits
        sessions += checked.sessions
    # What the collector must do to each request's events before storing them: decode, check, encode
    # (as collector/views.py does: one Validator, rows as JSONCompactEachRow).
    validator = Validator(settings)
    cpu_before = own_cpu_seconds()
    for _ in range(10):
        for body in raw_bodies:
            check_events(validator.parse(body), site="bench", settings=settings, compact=True)
    check_us_per_request = (own_cpu_seconds() - cpu_before) * 1e6 / (10 * len(raw_bodies))
    rows = 0
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for i in range(0, len(visits), batch_rows):
            chunk = visits[i:i + batch_rows]
            storage.insert_visits(client, chunk)
            rows += len(chunk)
        storage.insert_session_events(client, sessions)
        rows += len(sessions)
    elapsed = time.perf_counter() - started
    cpu = own_cpu_seconds() - cpu_before
    client.close()
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    return rows / elapsed, cpu * 1e6 / max(1, rows), check_us_per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=50, help="events per request")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    servers = _servers()
    servers.add_arguments(parser)
    args = parser.parse_args()

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="sw-bench-"))
    running = servers.start(args, work)
    try:
        result = _run(args, work, servers, load_before)
    finally:
        if running is not None:
            running.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")


def _run(args: argparse.Namespace, work: Path, servers: Any, load_before: list[str]) -> dict[str, Any]:
    store = servers.settings_values(args)
    env = {**os.environ, "STEPWATCH_DATA_DIR": str(work / "data"), "STEPWATCH_RATE_LIMIT_SITE": "0",
           "STEPWATCH_RATE_LIMIT_ADDRESS": "0", "STEPWATCH_LOG_LEVEL": "INFO",
           **{f"STEPWATCH_{name.upper()}": str(value) for name, value in store.items()}}
    cli = [sys.executable, "-m", "stepwatch"]
    site = json.loads(subprocess.run([*cli, "sites", "add", "bench", "--origin", "https://crm.example.com", "--json"],
                                     env=env, capture_output=True, text=True, check=True).stdout)
    bodies = make_bodies(site["key"], 2000, args.batch)
    bodies_path = work / "bodies.jsonl"
    bodies_path.write_text("\n".join(json.dumps(b, separators=(",", ":")) for b in bodies) + "\n")
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)

    port = free_port()
    log = work / "serve.log"
    collector = subprocess.Popen([*cli, "serve"], env={**env, "STEPWATCH_PORT": str(port)},
                                 stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz")
        idle_rss = peak_rss_mb(collector.pid)
        warm_up = time.monotonic()
        while True:  # until the first scheduled analysis has run (or 60 s)
            run_wrk(f"http://127.0.0.1:{port}", 3, args.connections, bodies_path, script)
            if '"analysis ran"' in log.read_text() or time.monotonic() - warm_up > 60:
                break
        cpu_before = cpu_seconds(collector.pid)
        measured = run_wrk(f"http://127.0.0.1:{port}", args.seconds, args.connections, bodies_path, script)
        cpu_per_request = (cpu_seconds(collector.pid) - cpu_before) / max(1, measured["requests"])
        rss = peak_rss_mb(collector.pid)
        after = memory_mb(collector.pid)
    finally:
        collector.terminate()
        collector.wait(60)

    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        time.sleep(1.5)  # the bare app has no health route; it starts in well under a second
        run_wrk(f"http://127.0.0.1:{port}", 2, args.connections, bodies_path, script)
        bare_cpu_before = cpu_seconds(bare.pid)
        bare_result = run_wrk(f"http://127.0.0.1:{port}", args.seconds, args.connections, bodies_path, script)
        bare_cpu = (cpu_seconds(bare.pid) - bare_cpu_before) / max(1, bare_result["requests"])
    finally:
        bare.terminate()
        bare.wait(30)

    raw_rate, raw_cpu_per_row, check_us = raw_insert_rate(bodies[:400], min(args.seconds, 10), 20_000, store)
    # The most a collector on this engine could reach against the bare handler on these cores: one
    # that did only the bare handler's work, the decoding and checking of the events and the engine's
    # insert of their rows (no spool, no fsync, no metrics), with wrk's CPU beside it.
    floor_us = (bare_cpu * 1e6 + check_us + args.batch * raw_cpu_per_row + bare_result["cpu_us_per_request"])
    ceiling_vs_bare = (os.cpu_count() or 1) * 1e6 / floor_us / bare_result["requests_per_s"]

    return {
        "store": servers.mode(args),
        "events_per_s": round(measured["requests_per_s"] * args.batch),
        "requests_per_s": round(measured["requests_per_s"]),
        "p50_ms": round(measured["p50_us"] / 1000, 2),
        "p99_ms": round(measured["p99_us"] / 1000, 2),
        "rss_mb": round(rss, 1),
        "idle_rss_mb": round(idle_rss, 1),
        "rss_anon_mb_at_end": round(after["RssAnon"], 1),
        "rss_file_mb_at_end": round(after["RssFile"], 1),
        "collector_cpu_us_per_request": round(cpu_per_request * 1e6),
        "non_2xx": measured["non2xx"],
        "socket_errors": measured["socket_errors"],
        "bare_requests_per_s": round(bare_result["requests_per_s"]),
        "collector_vs_bare": round(measured["requests_per_s"] / bare_result["requests_per_s"], 3),
        "raw_insert_rows_per_s": round(raw_rate),
        "raw_insert_cpu_us_per_row": round(raw_cpu_per_row, 2),
        "check_cpu_us_per_request": round(check_us),
        "bare_cpu_us_per_request": round(bare_cpu * 1e6),
        "wrk_cpu_us_per_request": round(bare_result["cpu_us_per_request"]),
        "ceiling_vs_bare": round(ceiling_vs_bare, 3),
        "seconds": args.seconds,
        "connections": args.connections,
        "events_per_request": args.batch,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
    }


if __name__ == "__main__":
    main()
