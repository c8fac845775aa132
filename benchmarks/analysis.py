"""Analysis benchmark: the full analysis, an incremental run and `stats` over 10 million step visits.

    python benchmarks/analysis.py --visits 10000000 --json

Builds a site on a fresh embedded engine: 200 managers in 8 teams, a process of 8 steps with
bands, and 90 days of right-skewed step times with a few planted drawdowns. The visits are
generated inside ClickHouse (INSERT ... SELECT FROM numbers()), because producing 10 million
rows in Python would measure the generator, not the analysis. Then it times, in this process:
the one-time backfill of the daily pre-aggregate; then, in a separate process like `stepwatch
analyze`: the full analysis (every manager x step, flags opened), an incremental run after one
new day of data arrives, `stepwatch stats` for one team (p50/p95 of 20 calls) and once
recomputed (`--fresh`), and that process's peak RSS (the embedded ClickHouse engine included).
The two analysis runs are also given in CPU seconds of that process (the engine's threads
included): on a machine shared with other work they move much less than the wall time.

With `--servers 1` or `--servers 2` (or `--clickhouse-url`, `--cluster`: benchmarks/servers.py) the
data lives on one ClickHouse server or on a cluster of shards instead of the embedded engine; the
peak RSS is then this process's alone, without the servers'.

With `--case-mix` the process declares a session attribute (`segment`: vip or regular), every
session's start event carries it, a VIP session takes 60% longer, and each manager serves from 10%
to 70% VIP clients: the analysis then compares like with like (each session's stratum read with its
time, van Elteren's test, mix-adjusted times; analysis/strata.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This file is named like the `analysis` package it measures: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

STEPS = ["greeting", "identification", "needs", "products", "offer", "contract", "payment", "closing"]
BASE_SECONDS = [40, 70, 260, 320, 240, 200, 100, 60]


# case mix: whether session s (a number) is a VIP client's, from its manager's share (10% to 70%)
VIP = "(cityHash64(session_id) % 100) < 10 + cityHash64(manager, 'mix') % 61"


def generate(client, site: str, managers: int, visits: int, days: int, end: datetime, first_session: int = 0,
             case_mix: bool = False) -> None:
    """`visits` step visits: sessions of 8 steps, managers round-robin, spread over the `days` days before
    `end`, numbered from `first_session` (a later batch continues the numbering, so its sessions are new).
    With `case_mix`, each session's start event with its segment, and VIP sessions 60% longer."""
    sessions = visits // len(STEPS)
    per_day = max(1, sessions // (managers * days))
    base = "[" + ",".join(str(s) for s in BASE_SECONDS) + "]"
    steps = "[" + ",".join(f"'{s}'" for s in STEPS) + "]"
    first_day = int((end - timedelta(days=days)).timestamp())
    client.command(f"""
        INSERT INTO step_visits (site, visit_id, seq, final, manager, session_id, customer, process, step, path,
                                 started_at, active_ms, idle_ms, hidden_ms, tracker, source)
        SELECT '{site}', generateUUIDv4(number), 0, true, manager, session_id, '', 'bench', step,
               concat('/clients/:customer/', step), started, toUInt32(t * 0.9), toUInt32(t * 0.1), 0, 'bench', 'bench'
        FROM (
            SELECT number,
                   intDiv(number, {len(STEPS)}) AS s,
                   number % {len(STEPS)} AS k,
                   concat('m-', leftPad(toString(s % {managers}), 3, '0')) AS manager,
                   concat('b-', toString(s + {first_session})) AS session_id,
                   {steps}[k + 1] AS step,
                   least(intDiv(s, {managers * per_day}), {days - 1}) AS day,
                   toDateTime64({first_day} + day * 86400 + 9 * 3600 + (intDiv(s, {managers}) % {per_day}) * 420
                                + k * 45, 3, 'UTC') AS started,
                   -- skill of the manager, planted slowdowns on a few pairs over the last 30 days
                   exp((cityHash64(manager) % 1000) / 1000 * 0.4 - 0.2)
                     * if(cityHash64(manager, step) % 40 = 0 AND day >= {days - 30}, 1.7, 1.0)
                     * if({int(case_mix)} AND {VIP}, 1.6, 1.0) AS factor,
                   {base}[k + 1] * 1000 * factor * exp(randNormal(0, 0.45)) AS t
            FROM numbers({visits})
        )
        SETTINGS max_insert_threads = 2
    """)
    if case_mix:
        client.command(f"""
            INSERT INTO session_events (site, event_id, session_id, action, manager, customer, process, at, outcome,
                                        attributes, tracker, source)
            SELECT '{site}', generateUUIDv4(number), session_id, 'start', manager, '', 'bench', started, '',
                   map('segment', if({VIP}, 'vip', 'regular')), 'bench', 'bench'
            FROM (
                SELECT number,
                       concat('m-', leftPad(toString(number % {managers}), 3, '0')) AS manager,
                       concat('b-', toString(number + {first_session})) AS session_id,
                       least(intDiv(number, {managers * per_day}), {days - 1}) AS day,
                       toDateTime64({first_day} + day * 86400 + 9 * 3600
                                    + (intDiv(number, {managers}) % {per_day}) * 420, 3, 'UTC') AS started
                FROM numbers({sessions})
            )
        """)


def setup_site(client, settings, managers: int, days: int, case_mix: bool = False) -> str:
    """The benchmark's site on a fresh store: a process of 8 steps, `managers` managers in 8 teams and a
    band per step in force from before the first of the `days` days. Returns the site's name."""
    from kernel import band_versions, migrations, processes, sites, teams

    migrations.apply_pending(client, settings.retention_days)
    site = "bench"
    sites.add_site(client, site, ["https://crm.example.com"], actor="bench")
    definition: dict = {"process": "bench",
                        "steps": [{"key": s, "patterns": [f"/clients/{{customer}}/{s}"]} for s in STEPS]}
    if case_mix:
        definition["attributes"] = {"segment": ["vip", "regular"]}
    processes.load(client, processes.from_definition(definition, site), actor="bench")
    names = [f"m-{i:03d}" for i in range(managers)]
    for t in range(8):
        teams.add_team(client, site, f"team-{t}", actor="bench")
        teams.assign(client, site, f"team-{t}", names[t::8], actor="bench")
    today = datetime.now(UTC).date()
    for step, seconds in zip(STEPS, BASE_SECONDS, strict=True):
        band_versions.add_version(client, site, step, "", int(seconds * 450), seconds * 1000, int(seconds * 1900),
                                  today - timedelta(days=days + 1), actor="bench", reason="benchmark")
    return site


def _servers() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_servers", Path(__file__).with_name("servers.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=10_000_000)
    parser.add_argument("--managers", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--stats-calls", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--case-mix", action="store_true", help="sessions with a declared segment (like for like)")
    parser.add_argument("--measure", metavar="DATA_DIR", help=argparse.SUPPRESS)  # the child process
    servers = _servers()
    servers.add_arguments(parser)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args)))
        return


    work = Path(tempfile.mkdtemp(prefix="sw-analysis-"))
    running = servers.start(args, work)
    try:
        result = _build_and_measure(args, work, servers)
    finally:
        if running is not None:
            running.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


def _build_and_measure(args: argparse.Namespace, work: Path, servers: Any) -> dict[str, Any]:
    from kernel import storage
    from kernel.settings import Settings

    settings = Settings(data_dir=work / "data", analysis_interval_s=0, **servers.settings_values(args))
    client = storage.connect(settings)
    site = setup_site(client, settings, args.managers, args.days, args.case_mix)
    today = datetime.now(UTC).date()

    end = datetime(today.year, today.month, today.day, tzinfo=UTC)  # data up to yesterday
    started = time.perf_counter()
    generate(client, site, args.managers, args.visits, args.days, end, case_mix=args.case_mix)
    generated_s = time.perf_counter() - started
    stored = client.command("SELECT count() FROM step_visits")
    # The daily pre-aggregate is normally kept up to date run by run; a store that received 90 days
    # at once (an import, an upgrade) fills it once. Timed on its own, not as part of an analysis.
    started = time.perf_counter()
    storage.refresh_session_steps(client, site)
    backfill_s = time.perf_counter() - started
    setup_rss_mb = peak_rss_mb()
    client.close()

    # The analysis runs in a process of its own, like `stepwatch analyze`, so its RSS is its own.
    child = subprocess.run([sys.executable, __file__, "--measure", str(settings.data_dir),
                            "--visits", str(args.visits), "--managers", str(args.managers), "--days", str(args.days),
                            "--stats-calls", str(args.stats_calls), *(["--case-mix"] if args.case_mix else []),
                            *servers.child_arguments(args)],
                           capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(f"the measuring process failed:\n{child.stderr[-3000:]}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    return {"store": servers.mode(args), "visits": int(stored), "managers": args.managers, "steps": len(STEPS),
            "days": args.days, "case_mix": args.case_mix,
            "generate_s": round(generated_s, 2), "preaggregate_backfill_s": round(backfill_s, 2),
            "setup_peak_rss_mb": round(setup_rss_mb, 1), **measured}


def measure(data_dir: Path, args: argparse.Namespace) -> dict[str, float | int]:
    """In a fresh process: a full analysis, one new day and an incremental run, then `stats`."""
    from analysis.stats import Window
    from kernel import storage
    from kernel.settings import Settings
    from stepwatch import analysis_run, memory

    memory.keep_freed_memory()  # as `stepwatch analyze` and `stepwatch serve` do (stepwatch/memory.py)
    settings = Settings(data_dir=data_dir, analysis_interval_s=0, **_servers().settings_values(args))
    client = storage.connect(settings)
    site = "bench"
    today = datetime.now(UTC).date()
    started, cpu = time.perf_counter(), time.process_time()
    runs = analysis_run.analyze(client, settings, until=today - timedelta(days=1), only_site=site)
    full_s, full_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    end = datetime(today.year, today.month, today.day, tzinfo=UTC)
    # today's visits, the day after the history: inside the new window, as a day of work arrives
    generate(client, site, args.managers, args.visits // args.days, 1, end + timedelta(days=1),
             first_session=args.visits // len(STEPS), case_mix=args.case_mix)
    started, cpu = time.perf_counter(), time.process_time()
    analysis_run.analyze(client, settings, until=today, only_site=site)
    incremental_s, incremental_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    timings = []  # `stepwatch stats --site bench --team team-3`: the latest run's figures
    for _ in range(args.stats_calls):
        started = time.perf_counter()
        saved = analysis_run.saved_stats(client, site)
        assert saved is not None
        rows = [r for r in saved[2] if r["team"] == "team-3"]
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(round(0.95 * (len(timings) - 1))))]
    window = analysis_run.window_ending(today, settings.analysis_window_days)
    started = time.perf_counter()  # `stats --fresh`: recomputed from the pre-aggregate
    analysis_run.stats_rows(client, analysis_run.run_site(client, site, settings, Window(window.since, window.until)))
    fresh_ms = (time.perf_counter() - started) * 1000
    client.close()
    return {
        "pairs": len(runs[0].result.assessments),
        "drawdowns": len(runs[0].result.drawdowns),
        "pairs_with_case_mix": sum(a.case_mix is not None for a in runs[0].result.assessments),
        "full_analysis_s": round(full_s, 2),
        "incremental_after_one_day_s": round(incremental_s, 2),
        "full_analysis_cpu_s": round(full_cpu_s, 2),
        "incremental_cpu_s": round(incremental_cpu_s, 2),
        "stats_team_rows": len(rows),
        "stats_p50_ms": round(statistics.median(timings), 1),
        "stats_p95_ms": round(p95, 1),
        "stats_fresh_ms": round(fresh_ms, 1),
        "analysis_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), the embedded engine included.

    Not getrusage's ru_maxrss: Linux carries it over from the parent through fork and exec, so a
    child started by a parent that peaked at 2.5 GB reports at least 2.5 GB whatever it uses.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
