"""Planning benchmark: is the power the assign form promises the power the verdict has?

    python benchmarks/planning.py [--assignments 1000] [--seed 7] [--json]

Each simulated assignment is a manager and 4-8 peers of one team on one step, with the day effects
of benchmarks/coaching.py (the simulation's weekdays, busy days shared by the team, each person's
own good and bad days) and 1.5% interrupted sessions 3-8 times longer. The plan reads four weeks
of history as the assign form does (coaching/planning.py: each person's rate and spread, the
design effect of their days, the variance of the days they share), then the assignment runs on
fresh days: a 28-day baseline and the 14 days after the coaching (evaluation.PRE_DAYS, the
default windows), evaluated by `evaluate`.

Per scenario (sessions a fortnight, log-spread):
  at MDE   the planted improvement is each plan's own minimum detectable change: the plan states
           80% power; the simulated share of `improved` should be within 0.05 of it
  at 25%   a fixed 25% improvement: the plan's stated power (mean over assignments) against the
           simulated share
Each simulated rate has its Monte Carlo standard error sqrt(p (1 - p) / n). A plan can state no
detectable change (the window after too likely to fall short of the verdict's 20 sessions for 80%
power): such assignments are counted apart in the MDE rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.simulate import WEEKDAY_EFFECT  # noqa: E402
from coaching import planning  # noqa: E402
from coaching.evaluation import PRE_DAYS, Criteria, PeerTimes, evaluate  # noqa: E402

HISTORY_DAYS, POST_DAYS = 28, 14
CRITERIA = Criteria(resamples=100)  # the bootstrap interval is descriptive: it does not change the verdict


@dataclass(frozen=True)
class Scenario:
    name: str
    per_fortnight: int  # the coached manager's sessions in 14 calendar days (10 working days)
    sigma: float  # log-spread of one session's time


SCENARIOS = (Scenario("busy, usual spread", 80, 0.45), Scenario("typical", 45, 0.55),
             Scenario("quiet", 30, 0.6), Scenario("BPI 2012 spread", 45, 1.0))


def workdays(calendar_days: int) -> int:
    return calendar_days * 5 // 7


def simulate(rng: np.random.Generator, s: Scenario, planted: float | None) -> tuple[float, bool, float]:
    """One assignment: (the plan's stated power at the planted change, `improved`, the planted change).
    `planted` None: the plan's own minimum detectable change."""
    history, pre, post = workdays(HISTORY_DAYS), workdays(PRE_DAYS), workdays(POST_DAYS)
    days = history + pre + post
    weekday = np.log(np.array(WEEKDAY_EFFECT))[np.arange(days) % 5]
    team_day = rng.normal(0, 0.05, days)
    seconds = float(rng.uniform(60, 480))

    def person(per_fortnight: float) -> tuple[np.ndarray, np.ndarray]:
        """(log time, day) of every session over the history and both windows."""
        skill, own_day = rng.normal(0, 0.04), rng.normal(0, 0.04, days)
        n = rng.poisson(per_fortnight * days / workdays(14))
        day = np.sort(rng.integers(0, days, n))
        logs = np.log(seconds * 1000) + skill + weekday[day] + team_day[day] + own_day[day] + rng.normal(0, s.sigma, n)
        interrupted = rng.random(n) < 0.015
        logs[interrupted] += np.log(rng.uniform(3, 8, int(interrupted.sum())))
        return logs, day

    me = person(s.per_fortnight)
    peers = [person(float(rng.integers(20, 81))) for _ in range(int(rng.integers(4, 9)))]

    def part(p: tuple[np.ndarray, np.ndarray], since: int, until: int) -> tuple[np.ndarray, np.ndarray]:
        keep = (p[1] >= since) & (p[1] < until)
        return np.exp(p[0][keep]), p[1][keep]

    seen = [part(p, 0, history) for p in (me, *peers)]
    volumes = [planning.volume(t, HISTORY_DAYS) for t, _ in seen]
    plan = planning.plan_windows(volumes[0], volumes[1:], pre_days=PRE_DAYS, post_days=POST_DAYS,
                                 days=planning.day_effects(seen, HISTORY_DAYS), criteria=CRITERIA,
                                 target_change=planted)
    change = planted if planted is not None else plan.min_detectable_change
    if change is None:
        return 0.0, False, 0.0
    stated = plan.power_at_target if planted is not None else planning.POWER
    windows = [(part(p, history, history + pre), part(p, history + pre, days)) for p in (me, *peers)]
    (own_pre, own_pre_on), (own_post, own_post_on) = windows[0]
    own_post = own_post * (1 - change)
    result = evaluate(own_pre, own_post,
                      [PeerTimes(f"p{i}", a[0], b[0], a[1], b[1]) for i, (a, b) in enumerate(windows[1:])],
                      post_days=POST_DAYS, criteria=CRITERIA, pre_on=own_pre_on, post_on=own_post_on)
    return float(stated or 0.0), result.verdict == "improved", change


def run(s: Scenario, planted: float | None, count: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    made = [simulate(rng, s, planted) for _ in range(count)]
    # a plan with no detectable change (too few sessions expected for 80%) states nothing to check
    draws = [d for d in made if planted is not None or d[2] > 0]
    count = len(draws)
    stated = float(np.mean([d[0] for d in draws]))
    simulated = float(np.mean([d[1] for d in draws]))
    return {"scenario": s.name, "per_fortnight": s.per_fortnight, "sigma": s.sigma,
            "planted": "MDE" if planted is None else f"{planted:.0%}",
            "mean_change": float(np.mean([d[2] for d in draws])), "stated_power": stated,
            "simulated_power": simulated, "se": math.sqrt(simulated * (1 - simulated) / count),
            "difference": simulated - stated, "assignments": count, "without_plan": len(made) - count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [run(s, planted, args.assignments, args.seed + i)
            for i, s in enumerate(SCENARIOS) for planted in (None, 0.25)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'scenario':<20} {'sess/14d':>8} {'sigma':>5} {'planted':>7} {'change':>6} {'stated':>6} "
          f"{'simulated':>12} {'diff':>6}")
    for r in rows:
        print(f"{r['scenario']:<20} {r['per_fortnight']:>8} {r['sigma']:>5.2f} {r['planted']:>7} "
              f"{r['mean_change']:>6.1%} {r['stated_power']:>6.2f} {r['simulated_power']:>6.3f} ±{r['se']:.3f} "
              f"{r['difference']:>+6.3f}" + (f"  ({r['without_plan']} without a plan)" if r["without_plan"] else ""))
    worst = max(abs(r["difference"]) for r in rows)
    print(f"largest |simulated - stated|: {worst:.3f} (target 0.05); {args.assignments} assignments per row, "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
