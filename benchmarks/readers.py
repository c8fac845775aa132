"""Readers benchmark: how the analysis reads session times out of ClickHouse, four ways, back to back.

    python benchmarks/readers.py --visits 10000000 --json [--data-dir DIR]

`kernel.storage.session_step_times` is the one read of the analysis run and of a coaching
evaluation that moves millions of values: every session of every manager x step of the look-back.
It asks ClickHouse for one UInt64 per session (pair number, day and time packed), reads the
answer with clickhouse-connect's query_np and sorts it in numpy. This benchmark times that read
against the alternatives, on the analysis benchmark's site (benchmarks/analysis.py: 200 managers,
8 steps, 90 days, 10 million visits), in one process, the ways taking turns:

- `query_np`: the packed query read by clickhouse-connect's Client.query_np (what runs);
- `native`: the packed query, the raw Native-format answer read by the few lines below;
- `query_arrow`: the packed query, read by Client.query_arrow (pyarrow comes with chdb-core);
- `sorted_np`: no packing, ClickHouse sorts the three columns (storage._read_sorted), read by query_np.

For each: p50 / p95 of --calls calls of the analysis's read (the 28-day look-back, every step) and
of a coaching evaluation's read (one step, 56 days), and of the whole analysis of the site
(analysis_run.run_site, nothing written), which is what a director waits for after new data.
Every way must return the same arrays; the benchmark checks it before timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This folder holds analysis.py, named like the `analysis` package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def _analysis_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("analysis_benchmark", Path(__file__).with_name("analysis.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_native(client: Any, sql: str, parameters: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The UInt64 columns `names` of `sql`: ClickHouse's Native format, parsed here a block at a time,
    each column's values read in place by numpy."""
    import numpy as np

    raw = memoryview(client.raw_query(sql, parameters=parameters, fmt="Native"))
    parts: dict[str, list[Any]] = {name: [np.empty(0, dtype="<u8")] for name in names}
    at = 0
    while at < len(raw):
        columns, at = _varint(raw, at)
        rows, at = _varint(raw, at)
        assert columns == len(names)
        for name in names:
            for expected in (name, "UInt64"):  # each column: its name, its type, then its values
                size, at = _varint(raw, at)
                assert bytes(raw[at:at + size]) == expected.encode()
                at += size
            parts[name].append(np.frombuffer(raw[at:at + 8 * rows], dtype="<u8"))
            at += 8 * rows
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


def read_query_arrow(client: Any, sql: str, parameters: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    import numpy as np

    table = client.query_arrow(sql, parameters=parameters)
    # to_numpy of a chunked column copies it into one array (writable, as _read_packed sorts in place)
    return {name: np.asarray(table.column(name).to_numpy(), dtype="<u8").copy() for name in names}


def ways(storage: Any) -> dict[str, Callable[[], Any]]:
    """name -> a context that switches storage's reader to that way (and back)."""
    from contextlib import contextmanager

    query_np, packed = storage._read_columns, storage._read_packed

    @contextmanager
    def way(reader: Any, sort_in_clickhouse: bool) -> Any:
        storage._read_columns = reader
        storage._read_packed = storage._read_sorted if sort_in_clickhouse else packed
        try:
            yield
        finally:
            storage._read_columns, storage._read_packed = query_np, packed

    return {
        "query_np": lambda: way(query_np, False),
        "native": lambda: way(read_native, False),
        "query_arrow": lambda: way(read_query_arrow, False),
        "sorted_np": lambda: way(query_np, True),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=10_000_000)
    parser.add_argument("--managers", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--data-dir", help="keep the data here (built once, reused when it exists)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from kernel import storage
    from kernel.settings import Settings
    from stepwatch import analysis_run

    bench = _analysis_benchmark()
    work = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="sw-readers-"))
    built = (work / "data").exists()
    settings = Settings(data_dir=work / "data", analysis_interval_s=0)
    client = storage.connect(settings)
    today = datetime.now(UTC).date()
    if not built:
        site = bench.setup_site(client, settings, args.managers, args.days)
        bench.generate(client, site, args.managers, args.visits,
                       args.days, datetime(today.year, today.month, today.day, tzinfo=UTC))
    site = "bench"
    storage.refresh_session_steps(client, site)
    visits = int(client.command("SELECT count() FROM step_visits"))
    window = analysis_run.window_ending(today - timedelta(days=1), settings.analysis_window_days)
    lookback = min(window.since, window.until - timedelta(days=analysis_run.LOOKBACK_DAYS - 1))

    def analysis_read() -> Any:
        return storage.session_step_times(client, site, lookback, window.until + timedelta(days=1))

    def evaluation_read() -> Any:
        return storage.session_step_times(client, site, today - timedelta(days=57), today, step="offer")

    def whole_analysis() -> Any:
        return analysis_run.run_site(client, site, settings, window)

    timed = {"analysis_read": analysis_read, "evaluation_read": evaluation_read, "run_site": whole_analysis}
    switches = ways(storage)

    reference = analysis_read()  # every way must give the same arrays
    sessions = sum(len(p.times_ms) for p in reference)
    for name, switch in switches.items():
        with switch():
            got = analysis_read()
        same = len(got) == len(reference) and all(
            (a.manager, a.step) == (b.manager, b.step) and np.array_equal(a.times_ms, b.times_ms)
            and np.array_equal(a.days, b.days) for a, b in zip(got, reference, strict=True))
        if not same:
            raise SystemExit(f"{name} reads something else than query_np")

    figures: dict[str, dict[str, list[float]]] = {w: {t: [] for t in timed} for w in switches}
    for switch in switches.values():  # warm-up
        with switch():
            for fn in timed.values():
                fn()
    for _ in range(args.calls):  # the ways take turns, so a slower minute hits them all alike
        for name, switch in switches.items():
            with switch():
                for what, fn in timed.items():
                    started = time.perf_counter()
                    fn()
                    figures[name][what].append((time.perf_counter() - started) * 1000)
    client.close()
    if not args.data_dir:
        shutil.rmtree(work, ignore_errors=True)

    result: dict[str, Any] = {"visits": visits, "sessions_read": sessions, "pairs": len(reference),
                              "calls": args.calls}
    for name, by_what in figures.items():
        result[name] = {f"{what}_{q}_ms": round(statistics.median(v) if q == "p50" else percentile(v, 0.95), 1)
                        for what, v in by_what.items() for q in ("p50", "p95")}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{visits:,} visits; the analysis reads {sessions:,} sessions of {len(reference)} pairs; "
          f"p50 / p95 of {args.calls} calls, ms")
    print(f"{'way':<12} {'analysis read':>16} {'evaluation read':>16} {'whole analysis':>16}")
    for name in figures:
        row = result[name]
        print(f"{name:<12}" + "".join(f"{row[f'{w}_p50_ms']:>8.0f} / {row[f'{w}_p95_ms']:<5.0f}"
                                      for w in timed))


if __name__ == "__main__":
    main()
