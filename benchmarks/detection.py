"""Detection benchmark: precision and recall of drawdown flags on synthetic sites with planted drawdowns.

    python benchmarks/detection.py --seeds 20 [--json]

For each seed it simulates a site (analysis/simulate.py: 6 teams of 5-9 managers, 7 steps, bands
proposed from 4 baseline weeks) with slow, fast and one systemic drawdown planted, runs
`assess` with the default thresholds, and scores the flags; then it simulates a site with nothing
planted (another seed) and counts its flags, all false. Targets: precision >= 0.95, recall >= 0.90,
at most 1 false flag per 100 manager x step pairs with nothing planted.

Scoring: a slow or fast flag is a true positive when that manager x step was planted with that
kind; a systemic flag when at least one slow drawdown was planted on that team x step. A planted
drawdown is found when a flag of its kind names its pair, or when it is slow, assessed slow and
covered by its step's systemic flag. Start-date error is in days against the first weekday on or
after the planted start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.flags import Thresholds, assess  # noqa: E402
from analysis.simulate import simulate  # noqa: E402

NULL_SEED_OFFSET = 10_000


def score_planted(seed: int, thresholds: Thresholds) -> dict[str, Any]:
    population = simulate(seed, thresholds=thresholds)
    result = assess(population.pairs, thresholds, population.window)
    planted = {(p.manager, p.step): p for p in population.plants}
    planted_steps = {(p.team, p.step) for p in population.plants if p.kind == "slow"}
    systemic_steps = {(f.team, f.step) for f in result.drawdowns if f.kind == "systemic"}
    status = {(a.manager, a.step): a.status for a in result.assessments}

    tp = 0
    found: set[tuple[str, str]] = set()
    for flag in result.drawdowns:
        if flag.kind == "systemic":
            tp += (flag.team, flag.step) in planted_steps
            continue
        plant = planted.get((flag.manager or "", flag.step))
        if plant is not None and plant.kind == flag.kind:
            tp += 1
            found.add((plant.manager, plant.step))
    for key, plant in planted.items():
        if plant.kind == "slow" and (plant.team, plant.step) in systemic_steps and status[key] == "slow":
            found.add(key)

    start_errors = []
    for flag in result.drawdowns:
        plant = planted.get((flag.manager or "", flag.step))
        if flag.kind != "systemic" and plant is not None and flag.start_date is not None:
            start_errors.append(abs((flag.start_date - _weekday_on_or_after(plant.start)).days))
    flagged = len(result.drawdowns)
    return {
        "seed": seed,
        "pairs": len(population.pairs),
        "planted": len(planted),
        "flagged": flagged,
        "tp": tp,
        "fp": flagged - tp,
        "fn": len(planted) - len(found),
        "precision": tp / flagged if flagged else 1.0,
        "recall": len(found) / len(planted) if planted else 1.0,
        "start_errors": start_errors,
    }


def score_null(seed: int, thresholds: Thresholds) -> dict[str, Any]:
    population = simulate(seed + NULL_SEED_OFFSET, plant=False, thresholds=thresholds)
    result = assess(population.pairs, thresholds, population.window)
    return {"pairs": len(population.pairs), "false_flags": len(result.drawdowns)}


def _weekday_on_or_after(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--drift", choices=["ewma", "cusum"], default="ewma", help="how start dates are found")
    args = parser.parse_args()
    thresholds = Thresholds(drift_method=args.drift)
    started = time.perf_counter()
    rows = []
    for seed in range(1, args.seeds + 1):
        row = score_planted(seed, thresholds)
        row.update({f"null_{k}": v for k, v in score_null(seed, thresholds).items()})
        rows.append(row)

    flagged, tp = sum(r["flagged"] for r in rows), sum(r["tp"] for r in rows)
    planted, fn = sum(r["planted"] for r in rows), sum(r["fn"] for r in rows)
    null_pairs, null_flags = sum(r["null_pairs"] for r in rows), sum(r["null_false_flags"] for r in rows)
    errors = sorted(e for r in rows for e in r["start_errors"])
    totals = {
        "seeds": args.seeds,
        "planted": planted,
        "flagged": flagged,
        "tp": tp,
        "fp": flagged - tp,
        "fn": fn,
        "precision": tp / flagged if flagged else 1.0,
        "recall": (planted - fn) / planted if planted else 1.0,
        "null_pairs": null_pairs,
        "null_false_flags": null_flags,
        "null_false_flags_per_100_pairs": 100 * null_flags / null_pairs,
        "start_date_median_abs_error_days": errors[len(errors) // 2] if errors else None,
        "start_date_within_2_days": sum(e <= 2 for e in errors) / len(errors) if errors else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    totals["targets_met"] = (
        totals["precision"] >= 0.95 and totals["recall"] >= 0.90 and totals["null_false_flags_per_100_pairs"] <= 1
    )
    if args.json:
        print(json.dumps({"totals": totals, "seeds": [{k: v for k, v in r.items() if k != "start_errors"}
                                                        for r in rows]}))  # fmt: skip
        return
    header = f"{'seed':>4} {'pairs':>5} {'planted':>7} {'flagged':>7} {'TP':>4} {'FP':>3} {'FN':>3} " \
             f"{'precision':>9} {'recall':>6} | {'null pairs':>10} {'false':>5} {'per 100':>7}"  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        per_100 = 100 * r["null_false_flags"] / r["null_pairs"]
        print(f"{r['seed']:>4} {r['pairs']:>5} {r['planted']:>7} {r['flagged']:>7} {r['tp']:>4} {r['fp']:>3} "
              f"{r['fn']:>3} {r['precision']:>9.3f} {r['recall']:>6.3f} | {r['null_pairs']:>10} "
              f"{r['null_false_flags']:>5} {per_100:>7.2f}")  # fmt: skip
    print("-" * len(header))
    t = totals
    print(f"{'all':>4} {'':>5} {t['planted']:>7} {t['flagged']:>7} {t['tp']:>4} {t['fp']:>3} {t['fn']:>3} "
          f"{t['precision']:>9.3f} {t['recall']:>6.3f} | {t['null_pairs']:>10} {t['null_false_flags']:>5} "
          f"{t['null_false_flags_per_100_pairs']:>7.2f}")  # fmt: skip
    print(f"start date: median error {t['start_date_median_abs_error_days']} days, "
          f"{t['start_date_within_2_days']:.0%} within 2 days; {t['seconds']} s; "
          f"targets (precision >= 0.95, recall >= 0.90, <= 1 false flag per 100 null pairs): "
          f"{'met' if t['targets_met'] else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
