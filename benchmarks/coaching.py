"""Coaching benchmark: how often the verdict says `improved` when it should, and when it should not.

    python benchmarks/coaching.py [--assignments 2000] [--grid 200] [--json]

Each simulated assignment is a manager and 4-8 peers of one team on one step (typical time and
log-spread from analysis/simulate.py: 45 s to 10 min, spread 0.45-0.6), with the simulation's
day-of-week effects, busy days shared by the team, a manager's own good and bad days and 1.5%
interrupted sessions 3-8 times longer. The window before the assignment and the window after the
coaching are 14 days each (10 working days); the coached manager has 40-80 sessions in each
(a manager serving 4 to 8 clients a day through the step), each peer 20-80.

Scenarios (targets from issue 6):
  planted   the coached manager is 20% faster after the coaching      power of `improved` >= 0.8
  null      nothing changes                                            false `improved` <= 5%
  seasonal  the whole team, the coached manager too, is 20% faster     `improved` <= 5% (not credited)
  seasonal+ the team 15% faster and the manager 20% faster beyond it   power under a season
The grid repeats `planted` and `null` at fixed sessions per window and spreads, to show where the
power comes from; `pre 28 days` is the planted scenario with a four-week window before.

Each rate is given with its Monte Carlo standard error, sqrt(p (1 - p) / n). `ceiling` is the power
no test at a one-sided 5% can beat on these session counts and spreads: that of the best test
(a z-test of the mean log time with the spread known) on the manager's own sessions with no
peers to estimate, no day effects and no interrupted sessions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scipy import stats  # noqa: E402

from analysis.simulate import STEPS, WEEKDAY_EFFECT  # noqa: E402
from coaching.evaluation import PeerTimes, evaluate  # noqa: E402

WORKDAYS = 10  # 14 calendar days


@dataclass(frozen=True)
class Scenario:
    name: str
    coached: float  # the coached manager's time after, as a factor, beyond the season
    season: float  # everyone's time after, as a factor
    sessions: tuple[int, int] = (40, 80)  # coached manager's sessions per window, inclusive
    sigma: float | None = None  # None = the step's own spread
    pre_workdays: int = WORKDAYS


def simulate(rng: np.random.Generator, s: Scenario) -> tuple[PeerTimes, list[PeerTimes]]:
    """The coached manager's sessions (times and workday of each, before and after) and the peers'."""
    seconds, step_sigma, _ = STEPS[list(STEPS)[int(rng.integers(len(STEPS)))]]
    sigma = s.sigma if s.sigma is not None else step_sigma
    days = s.pre_workdays + WORKDAYS
    after = np.arange(days) >= s.pre_workdays
    weekday = np.log(np.array(WEEKDAY_EFFECT))[(np.arange(days) - s.pre_workdays) % 5]
    team_day = rng.normal(0, 0.05, days)
    season = np.where(after, np.log(s.season), 0.0)

    def manager(name: str, coached: bool, low: int, high: int) -> PeerTimes:
        skill, own_day = rng.normal(0, 0.04), rng.normal(0, 0.04, days)
        out, on = [], []
        for post in (False, True):
            n = int(rng.integers(low, high + 1))
            if not post:
                n = round(n * s.pre_workdays / WORKDAYS)
            day = rng.integers(s.pre_workdays, days, n) if post else rng.integers(0, s.pre_workdays, n)
            log_s = (np.log(seconds) + skill + weekday[day] + team_day[day] + own_day[day] + season[day]
                     + rng.normal(0, sigma, n))
            if coached and post:
                log_s += np.log(s.coached)
            interrupted = rng.random(n) < 0.015
            log_s[interrupted] += np.log(rng.uniform(3, 8, int(interrupted.sum())))
            out.append(np.exp(log_s) * 1000)
            on.append(day)
        return PeerTimes(name, out[0], out[1], on[0], on[1])

    coached = manager("coached", True, *s.sessions)
    peers = [manager(f"peer-{i}", False, 20, 80) for i in range(int(rng.integers(4, 9)))]
    return coached, peers


def run(s: Scenario, count: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    verdicts: dict[str, int] = {}
    effects = []
    for _ in range(count):
        me, peers = simulate(rng, s)
        result = evaluate(me.pre_ms, me.post_ms, peers, post_days=14, pre_on=me.pre_on, post_on=me.post_on)
        verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
        if result.relative_effect_pct is not None:
            effects.append(result.relative_effect_pct)
    improved = verdicts.get("improved", 0)
    return {"scenario": s.name, "assignments": count, "sessions": list(s.sessions), "sigma": s.sigma,
            "improved": improved, "rate": improved / count, "interval": _wilson(improved, count),
            "mc_se": float(np.sqrt(improved / count * (1 - improved / count) / count)), "ceiling": ceiling(s),
            "verdicts": verdicts, "median_effect_pct": float(np.median(effects)) if effects else None}


def ceiling(s: Scenario, alpha: float = 0.05) -> float | None:
    """Average power of the most powerful one-sided test of the manager's own shift in log time,
    the spread known and nothing else in the way, over the scenario's steps and session counts."""
    effect = -np.log(s.coached)
    if effect <= 0:
        return None
    sigmas = np.array([s.sigma] if s.sigma is not None else [sigma for _, sigma, _ in STEPS.values()])
    counts = np.arange(s.sessions[0], s.sessions[1] + 1)
    before = np.round(counts * s.pre_workdays / WORKDAYS)  # as in simulate()
    se = sigmas[:, None, None] * np.sqrt(1 / before[None, :, None] + 1 / counts[None, None, :])
    return float(np.mean(stats.norm.cdf(effect / se - stats.norm.ppf(1 - alpha))))


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignments", type=int, default=2000, help="simulated assignments per scenario (>= 50)")
    parser.add_argument("--grid", type=int, default=200, help="assignments per grid cell (0 = no grid)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.assignments < 50:
        parser.error("at least 50 assignments per scenario")
    started = time.perf_counter()
    main_rows = [
        (run(Scenario("planted", 0.8, 1.0), args.assignments, 1), ">= 0.80"),
        (run(Scenario("null", 1.0, 1.0), args.assignments, 2), "<= 0.05"),
        (run(Scenario("seasonal", 1.0, 0.8), args.assignments, 3), "<= 0.05"),
        (run(Scenario("seasonal+", 0.8, 0.85), args.assignments, 4), ""),
        (run(Scenario("pre 28 days", 0.8, 1.0, pre_workdays=20), args.assignments, 5), ""),
    ]
    grid = []
    if args.grid:
        for sigma in (0.35, 0.45, 0.55):
            for n in (40, 60, 80, 120):
                planted = run(Scenario("planted", 0.8, 1.0, (n, n), sigma), args.grid, 100 + n + int(sigma * 100))
                null = run(Scenario("null", 1.0, 1.0, (n, n), sigma), args.grid, 200 + n + int(sigma * 100))
                grid.append({"sigma": sigma, "sessions": n, "power": planted["rate"], "false": null["rate"]})
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"scenarios": [dict(r, target=t) for r, t in main_rows], "grid": grid,
                          "seconds": round(elapsed, 1)}, indent=2))
        return
    print(f"{args.assignments} simulated assignments per scenario, sessions per window 40-80 (coached manager), "
          f"{elapsed:.0f} s\n")
    print("| scenario | `improved` | rate | MC SE | 95% interval | target | met | ceiling | median effect vs peers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r, target in main_rows:
        met = "" if not target else ("yes" if (r["rate"] >= 0.8 if target.startswith(">=") else r["rate"] <= 0.05)
                                     else "no")
        effect = f"{r['median_effect_pct']:+.1f}%" if r["median_effect_pct"] is not None else "-"
        bound = f"{r['ceiling']:.3f}" if r["ceiling"] is not None else "-"
        print(f"| {r['scenario']} | {r['improved']} of {r['assignments']} | {r['rate']:.3f} | {r['mc_se']:.3f} | "
              f"{r['interval'][0]:.3f}-{r['interval'][1]:.3f} | {target or '-'} | {met or '-'} | {bound} | {effect} |")
    if grid:
        print(f"\npower of `improved` (planted 20%) / false `improved` (nothing planted), {args.grid} assignments a "
              "cell, by log-spread of the step and sessions per window:\n")
        sessions = sorted({g["sessions"] for g in grid})
        print("| spread | " + " | ".join(f"{n} sessions" for n in sessions) + " |")
        print("|---|" + "---|" * len(sessions))
        for sigma in sorted({g["sigma"] for g in grid}):
            cells = [g for g in grid if g["sigma"] == sigma]
            print(f"| {sigma:.2f} | " + " | ".join(f"{g['power']:.2f} / {g['false']:.3f}" for g in cells) + " |")


if __name__ == "__main__":
    main()
