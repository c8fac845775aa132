"""Import speed and memory: the real BPI 2012 log, and synthetic CSV logs of two sizes (10x apart).

Each import runs in a fresh process on a fresh data directory and reports events per second and
its peak RSS. The RSS includes the embedded ClickHouse engine, whose memory grows with the data it
stores and merges; the importer's own memory is measured with `--heap` (tracemalloc: the peak of
the Python heap during the import, which should be the same for the small and the 10x file).

    .venv/bin/python benchmarks/import_log.py [--rows 200000] [--heap] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BPI = REPO.parent / "shared" / "data" / "bpi2012_work_items.xes.gz"
STEPS = ["identification", "needs", "products", "offer", "contract", "payment"]


def write_csv(path: Path, rows: int, seed: int = 1) -> None:
    """Work items with start and end columns: cases of 2-6 steps, 50 managers, the last 300 days."""
    rng = random.Random(seed)
    clock = datetime.now(UTC).timestamp() - 300 * 86_400
    step = 300 * 86_400 / rows
    with open(path, "w") as f:
        f.write("case,activity,resource,start,end\n")
        written = case = 0
        while written < rows:
            case += 1
            who = f"m-{rng.randrange(50):02d}"
            for name in STEPS[: rng.randint(2, 6)]:
                start = clock + rng.uniform(0, step)
                end = start + rng.lognormvariate(5, 0.6)
                f.write(f"C{case},{name},{who},{_iso(start)},{_iso(end)}\n")
                clock += step
                written += 1
                if written == rows:
                    break


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def child(path: Path, data_dir: Path, heap: bool) -> None:
    """Import one file in this process and print its figures as JSON."""
    from kernel import migrations, sites, storage
    from kernel.settings import Settings
    from stepwatch import eventlog

    settings = Settings(data_dir=data_dir, retention_days=10_000)
    client = storage.connect(settings)
    migrations.apply_pending(client, settings.retention_days)
    sites.add_site(client, "bench", ["https://crm.example.com"], actor="benchmark")
    if heap:
        import tracemalloc

        tracemalloc.start()
    began = time.monotonic()
    summary = eventlog.import_log(client, settings, path, eventlog.ImportOptions(site="bench"))
    seconds = time.monotonic() - began
    heap_peak = None
    if heap:
        heap_peak = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    print(json.dumps({"file": path.name, "bytes": path.stat().st_size, "events": summary.events,
                      "visits": summary.visits, "bad_rows": summary.bad_rows, "seconds": round(seconds, 2),
                      "events_per_second": round(summary.events / seconds),
                      "events_per_minute": round(summary.events / seconds * 60),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "python_heap_peak_mib": heap_peak}))


def measure(path: Path, work: Path, heap: bool = False) -> dict[str, object]:
    data_dir = Path(tempfile.mkdtemp(dir=work))
    command = [sys.executable, __file__, "--child", str(path), str(data_dir), *(["--heap"] if heap else [])]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the small synthetic CSV (the large: 10x)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--heap", action="store_true", help="also trace the Python heap (slower)")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.heap)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if BPI.exists():
            results.append(measure(BPI, work, args.heap))
        for rows in (args.rows, args.rows * 10):
            path = work / f"synthetic-{rows}.csv"
            write_csv(path, rows)
            results.append(measure(path, work, args.heap))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['file']:36s} {r['events']:>10,} events  {r['seconds']:>7.1f} s  "
              f"{r['events_per_minute']:>12,} events/min  peak RSS {r['peak_rss_mib']} MiB"
              + (f"  Python heap peak {r['python_heap_peak_mib']} MiB" if r["python_heap_peak_mib"] else ""))


if __name__ == "__main__":
    main()
