"""How spread out one person's times on one step are in real work, and what that means for the
power of any coaching verdict.

    python benchmarks/real_spread.py [--log ../shared/data/bpi2012_work_items.xes.gz] [--json]

Reads the BPI Challenge 2012 work-item log (../shared/data/README.md) with stepwatch's own XES
reader and the import's definitions (docs/import-export.md): a work item is a `start` paired with
the next `complete` of the same case, activity and resource, items over 12 h are left out, a
session-step (one case x resource x activity) is the sum of its items. For every resource x
activity with at least 40 session-steps it takes the spread of the log of their times: the
standard deviation, and the robust one (interquartile range / 1.349, which outliers do not move).

Then the power of the best possible one-sided 5% test of a planted 20% improvement with 40
sessions before and 40 after, at that spread (the spread known, no peers, no day effects):
Phi(log(1 / 0.8) / (s * sqrt(2 / 40)) - 1.645). benchmarks/coaching.py's simulation uses spreads of
0.45-0.6; the power target of issue 6 (0.8 at 40 sessions) needs a spread of at most about 0.40.
benchmarks/coaching.py runs its scenarios again at the median robust spread (median_robust_spread).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stepwatch.eventlog._read import LogEvent, open_log, read_xes  # noqa: E402

LOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "bpi2012_work_items.xes.gz"
TWELVE_HOURS_S = 12 * 3600
SESSIONS, EFFECT = 40, math.log(1 / 0.8)


def session_step_times(path: Path) -> dict[tuple[str, str], list[float]]:
    """(resource, activity) -> the time of each of its session-steps, in seconds."""
    started: dict[tuple[str, str, str], float] = {}
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    _, stream = open_log(path)
    with stream:
        for event in read_xes(stream):
            if not isinstance(event, LogEvent):
                continue
            key = (event.case, event.resource, event.activity)
            if event.lifecycle == "start":
                started[key] = event.at
            elif event.lifecycle == "complete" and key in started:
                length = event.at - started.pop(key)
                if 0 <= length <= TWELVE_HOURS_S:
                    totals[key] += length
    pairs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (_, resource, activity), seconds in totals.items():
        if seconds > 0:  # a zero-length item has no log; it is a click, not work
            pairs[(resource, activity)].append(seconds)
    return pairs


def spreads(path: Path = LOG) -> tuple[list[float], list[float]]:
    """The standard deviation and the robust spread (IQR / 1.349) of log time, one of each per
    resource x activity with at least SESSIONS session-steps."""
    sd, robust = [], []
    for times in session_step_times(path).values():
        if len(times) >= SESSIONS:
            logs = np.log(times)
            sd.append(float(np.std(logs, ddof=1)))
            q1, q3 = np.percentile(logs, [25, 75])
            robust.append(float((q3 - q1) / 1.349))
    return sd, robust


def median_robust_spread(path: Path = LOG) -> float:
    """The typical employee's spread on one activity: the median of the robust spreads."""
    return round(float(np.median(spreads(path)[1])), 2)


def best_power(spread: float) -> float:
    return float(norm.cdf(EFFECT / (spread * math.sqrt(2 / SESSIONS)) - norm.ppf(0.95)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, default=LOG)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.log.exists():
        sys.exit(f"no log at {args.log} (see ../shared/data/README.md)")
    sd, robust = spreads(args.log)
    levels = [10, 25, 50, 75, 90]
    result = {
        "pairs": len(sd),
        "percentiles": levels,
        "log_sd": [round(float(v), 2) for v in np.percentile(sd, levels)],
        "robust_log_spread": [round(float(v), 2) for v in np.percentile(robust, levels)],
        "best_power_at_robust_spread": [round(best_power(float(v)), 2) for v in np.percentile(robust, levels)],
        "spread_for_power_0_8": round(EFFECT / ((norm.ppf(0.95) + norm.ppf(0.8)) * math.sqrt(2 / SESSIONS)), 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"resource x activity pairs with >= {SESSIONS} session-steps: {result['pairs']}")
    print(f"{'percentile':>10} {'log sd':>8} {'robust':>8} {'best power, 20% at 40 sessions':>32}")
    for i, level in enumerate(levels):
        print(f"{level:>10} {result['log_sd'][i]:>8} {result['robust_log_spread'][i]:>8} "
              f"{result['best_power_at_robust_spread'][i]:>32}")
    print(f"spread at which the best test reaches power 0.8: {result['spread_for_power_0_8']}")


if __name__ == "__main__":
    main()
