"""Coaching benchmark: how often the verdict says `improved` when it should, and when it should not,
set against the best test that could be run on the same sessions.

    python benchmarks/coaching.py [--assignments 2000] [--grid 0] [--real-spread 0.99] [--json]
                                  [--scenarios planted,null] [--spreads step,real]
                                  [--processes N]

Each simulated assignment is a manager and 4-8 peers of one team on one step (typical time and
log-spread from analysis/simulate.py: 45 s to 10 min, spread 0.45-0.6), with the simulation's
day-of-week effects, busy days shared by the team, a manager's own good and bad days and 1.5%
interrupted sessions 3-8 times longer. Time runs in fortnights of 10 working days: the baseline
(the 28 days before the trigger fortnight, two fortnights), the trigger fortnight just before the
assignment (left out of the comparison, as in production) and the 14 days after the coaching. The
coached manager has 40-80 sessions a fortnight (4 to 8 clients a day through the step), each peer
20-80. Every scenario runs at the step's own spread and at the spread measured in the real BPI
Challenge 2012 log (benchmarks/real_spread.py: the median robust spread of one employee's log
times on one activity, 0.99).

Scenarios:
  planted   the coached manager is 20% faster after the coaching   power >= 0.90 of the oracle's
  null      nothing changes                                       false `improved` <= 0.05
  seasonal  the whole team, the coached manager too, 20% faster    `improved` <= 0.05 (not credited)
  rtm       the coaching follows the manager's worst of 6          `improved` <= 0.05 (regression
            fortnights (relative to the peers); nothing changes     to the mean not credited)
  seasonal+ the team 15% faster and the manager 20% beyond it      power under a season
`trigger as baseline` is the rate of the same test had it compared the window after the coaching
with the trigger fortnight instead of the baseline: what the baseline's exclusion buys.

The oracle is the most powerful one-sided 5% test of the planted shift in the manager's mean log
time on the manager's own sessions in the verdict's two windows (baseline and after), knowing
the true spread sigma, the season and that there are no day effects and no interrupted
sessions: power Phi(log(1 / 0.8) / (sigma sqrt(1 / n_baseline + 1 / n_after)) - 1.645), averaged
over the simulated assignments' session counts. No test on those sessions can do better; `ratio`
is the verdict's power over the oracle's. Each rate is given with its Monte Carlo standard error,
sqrt(p (1 - p) / n).

The oracle's test is also run on each assignment's own clean sessions (the same draws without the
day effects and the interruptions), which makes the estimates sharper without changing what they
estimate (`paired`): the power ratio as the verdict's rate over the oracle's rate on the same
draws, and, with nothing planted, the false rate less the oracle's departure from its known 5% on
these draws (a control variate). `met` is judged on these, and on the rate for `rtm`, whose
selected fortnights leave the oracle's rate unknown; beside it, how many Monte Carlo standard
errors the estimate is from its target (a rate within about 2 of it is not told from the target).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scipy import stats  # noqa: E402

from analysis.simulate import STEPS, WEEKDAY_EFFECT  # noqa: E402
from coaching.evaluation import PeerTimes, _yuen, evaluate  # noqa: E402

FORTNIGHT = 10  # working days in 14 calendar days
BASELINE_FORTNIGHTS = 2  # the 28 days before the trigger fortnight
RTM_CANDIDATES = 6  # the trigger is the worst of the last 6 fortnights (a quarter)
BPI_SPREAD = 0.99  # benchmarks/real_spread.py, median robust spread; recomputed when the log is there
ALPHA = 0.05


@dataclass(frozen=True)
class Scenario:
    name: str
    coached: float  # the coached manager's time after, as a factor, beyond the season
    season: float  # everyone's time after, as a factor
    rtm: bool = False  # the trigger fortnight is the manager's worst of RTM_CANDIDATES
    sessions: tuple[int, int] = (40, 80)  # coached manager's sessions a fortnight, inclusive
    sigma: float | None = None  # None = the step's own spread


@dataclass(frozen=True)
class Assignment:
    me: PeerTimes  # baseline and after
    peers: list[PeerTimes]
    trigger_me: PeerTimes  # the trigger fortnight and after
    trigger_peers: list[PeerTimes]
    sigma: float
    clean: list[tuple[np.ndarray, np.ndarray]]  # log times without days or interruptions: the manager, then each peer


def simulate(rng: np.random.Generator, s: Scenario) -> Assignment:
    """One assignment: everyone's sessions (times and working day of each) fortnight by fortnight."""
    seconds, step_sigma, _ = STEPS[list(STEPS)[int(rng.integers(len(STEPS)))]]
    sigma = s.sigma if s.sigma is not None else step_sigma
    before = RTM_CANDIDATES if s.rtm else BASELINE_FORTNIGHTS + 1
    days = (before + 1) * FORTNIGHT
    weekday = np.log(np.array(WEEKDAY_EFFECT))[np.arange(days) % 5]
    team_day = rng.normal(0, 0.05, days)

    def person(coached: bool, low: int, high: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(times in ms, day, clean log time) for each fortnight before, then the fortnight after. The
        clean log time is the same session without its day's effects and without an interruption."""
        skill, own_day = rng.normal(0, 0.04), rng.normal(0, 0.04, days)
        out = []
        for f in range(before + 1):
            after = f == before
            n = int(rng.integers(low, high + 1))
            day = rng.integers(f * FORTNIGHT, (f + 1) * FORTNIGHT, n)
            noise = rng.normal(0, sigma, n)
            log_s = np.log(seconds) + skill + weekday[day] + team_day[day] + own_day[day] + noise
            clean = np.log(seconds) + skill + noise
            if after:
                log_s += np.log(s.season) + (np.log(s.coached) if coached else 0.0)
                clean += np.log(s.season) + (np.log(s.coached) if coached else 0.0)
            interrupted = rng.random(n) < 0.015
            log_s[interrupted] += np.log(rng.uniform(3, 8, int(interrupted.sum())))
            out.append((np.exp(log_s) * 1000, day, clean))
        return out

    me = person(True, *s.sessions)
    peers = [person(False, 20, 80) for _ in range(int(rng.integers(4, 9)))]
    if s.rtm:  # the fortnight in which the manager looked worst against the peers prompts the coaching
        gap = [_yuen(me[f][0], 0.1)[0] - _yuen(np.concatenate([p[f][0] for p in peers]), 0.1)[0]
               for f in range(before)]
        trigger = int(np.argmax(gap))
        rest = [f for f in range(before) if f != trigger]
        baseline = sorted(rng.choice(rest, BASELINE_FORTNIGHTS, replace=False).tolist())
    else:
        trigger, baseline = before - 1, list(range(BASELINE_FORTNIGHTS))

    def windows(p: list[tuple[np.ndarray, np.ndarray, np.ndarray]], name: str, pre: list[int]) -> PeerTimes:
        return PeerTimes(name, np.concatenate([p[f][0] for f in pre]), p[before][0],
                         np.concatenate([p[f][1] for f in pre]), p[before][1])

    named = list(enumerate(peers))
    clean = [(np.concatenate([p[f][2] for f in baseline]), p[before][2]) for p in [me, *peers]]
    return Assignment(windows(me, "coached", baseline), [windows(p, f"peer-{i}", baseline) for i, p in named],
                      windows(me, "coached", [trigger]), [windows(p, f"peer-{i}", [trigger]) for i, p in named], sigma,
                      clean)


def oracle_power(effect: float, sigma: float, n_pre: int, n_post: int, peers: list[tuple[int, int]] | None = None,
                 alpha: float = ALPHA) -> float:
    """Power of the most powerful one-sided test of a shift `effect` in the manager's mean log time,
    sigma known: on the manager's own sessions (`peers` None: the season known too), or less the
    peers' change in mean log time weighted by precision (the season estimated, as the verdict must)."""
    variance = sigma ** 2 * (1 / n_pre + 1 / n_post)
    if peers is not None:
        variance += 1 / sum(1 / (sigma ** 2 * (1 / a + 1 / b)) for a, b in peers)
    return float(stats.norm.cdf(effect / np.sqrt(variance) - stats.norm.ppf(1 - alpha)))


def oracle_says_improved(clean: list[tuple[np.ndarray, np.ndarray]], sigma: float, alpha: float = ALPHA) -> bool:
    """The oracle's test itself, on one assignment's clean log times (the manager's baseline and
    after, then each peer's): the manager's change in mean log time less the peers' changes weighted
    by precision, over its standard error from sigma and the session counts, below -z(1 - alpha).
    Its rate over the assignments estimates `oracle_power` on the very draws the verdict saw."""
    (pre, post), peers = clean[0], clean[1:]
    weights = np.array([1 / (sigma ** 2 * (1 / a.size + 1 / b.size)) for a, b in peers])
    peer_change = float(np.dot(weights, [b.mean() - a.mean() for a, b in peers]) / weights.sum())
    variance = sigma ** 2 * (1 / pre.size + 1 / post.size) + 1 / weights.sum()
    return bool((post.mean() - pre.mean() - peer_change) / np.sqrt(variance) < -stats.norm.ppf(1 - alpha))


def paired(verdict: np.ndarray, oracle: np.ndarray, null: bool) -> tuple[float, float]:
    """The verdict's rate estimated with the oracle's test on the same draws, and its Monte Carlo
    standard error. With nothing planted the oracle's rate is known to be ALPHA, so its departure
    on these draws is a control variate: rate - b (oracle rate - ALPHA), b the regression of the
    verdict's calls on the oracle's. With an effect planted: the ratio of the two rates, whose error
    (delta method) is small when the two tests call the same draws."""
    v, o, n = verdict.astype(float), oracle.astype(float), verdict.size
    cov = float(np.cov(v, o)[0, 1]) if n > 1 else 0.0
    if null:
        b = cov / o.var(ddof=1) if o.var() > 0 else 0.0
        adjusted = v.mean() - b * (o.mean() - ALPHA)
        return float(adjusted), float(np.sqrt(max(v.var(ddof=1) - b * cov, 0.0) / n))
    ratio = v.mean() / o.mean()
    spread = v.var(ddof=1) - 2 * ratio * cov + ratio ** 2 * o.var(ddof=1)
    return float(ratio), float(np.sqrt(max(spread, 0.0) / n) / o.mean())


def run(s: Scenario, count: int, seed: int, compare_trigger: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    verdicts: dict[str, int] = {}
    effects, oracle, own_oracle, by_trigger = [], [], [], 0
    calls, oracle_calls = np.zeros(count, bool), np.zeros(count, bool)
    effect = -np.log(s.coached)
    for k in range(count):
        a = simulate(rng, s)
        me = a.me
        result = evaluate(me.pre_ms, me.post_ms, a.peers, post_days=14, pre_on=me.pre_on, post_on=me.post_on)
        verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
        calls[k], oracle_calls[k] = result.verdict == "improved", oracle_says_improved(a.clean, a.sigma)
        if result.relative_effect_pct is not None:
            effects.append(result.relative_effect_pct)
        if effect > 0:
            counts = [(p.pre_ms.size, p.post_ms.size) for p in a.peers]
            oracle.append(oracle_power(effect, a.sigma, me.pre_ms.size, me.post_ms.size, counts))
            own_oracle.append(oracle_power(effect, a.sigma, me.pre_ms.size, me.post_ms.size))
        if compare_trigger:
            t = a.trigger_me
            by_trigger += evaluate(t.pre_ms, t.post_ms, a.trigger_peers, post_days=14, pre_on=t.pre_on,
                                   post_on=t.post_on).verdict == "improved"
    improved = verdicts.get("improved", 0)
    rate = improved / count
    bound = float(np.mean(oracle)) if oracle else None
    own_bound = float(np.mean(own_oracle)) if own_oracle else None
    same_draws, same_draws_se = paired(calls, oracle_calls, null=effect == 0) if not s.rtm else (None, None)
    return {"scenario": s.name, "spread": "step" if s.sigma is None else s.sigma, "assignments": count,
            "improved": improved, "rate": rate, "mc_se": float(np.sqrt(rate * (1 - rate) / count)),
            "interval": _wilson(improved, count), "oracle": bound, "ratio": rate / bound if bound else None,
            "oracle_same_draws": float(oracle_calls.mean()), "paired": same_draws, "paired_se": same_draws_se,
            "oracle_season_known": own_bound, "ratio_season_known": rate / own_bound if own_bound else None,
            "trigger_as_baseline": by_trigger / count if compare_trigger else None, "verdicts": verdicts,
            "median_effect_pct": float(np.median(effects)) if effects else None}


def margin(row: dict[str, Any]) -> float | None:
    """How far the draws' best estimate is on the right side of its target, in Monte Carlo standard
    errors (negative: on the wrong side): the paired estimate where the oracle's test gives one."""
    if row["scenario"] == "planted":
        return (row["paired"] - 0.90) / row["paired_se"]
    if row["scenario"] in ("null", "seasonal"):
        return (0.05 - row["paired"]) / row["paired_se"]
    if row["scenario"] == "rtm":
        return (0.05 - row["rate"]) / row["mc_se"] if row["mc_se"] else None
    return None


def met(row: dict[str, Any]) -> bool | None:
    found = margin(row)
    return None if found is None else found >= 0


SCENARIOS = {s.name: s for s in (Scenario("planted", 0.8, 1.0), Scenario("null", 1.0, 1.0),
                                 Scenario("seasonal", 1.0, 0.8), Scenario("rtm", 1.0, 1.0, rtm=True),
                                 Scenario("seasonal+", 0.8, 0.85))}
TRIGGER = ("null", "rtm")  # the scenarios also run with the trigger fortnight as the baseline, to compare
TARGETS = {"planted": "ratio >= 0.90", "null": "<= 0.05", "seasonal": "<= 0.05", "rtm": "<= 0.05"}


def _cell(cell: tuple[Scenario, int, int, bool]) -> dict[str, Any]:
    s, count, seed, compare_trigger = cell
    return run(s, count, seed, compare_trigger=compare_trigger)


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _real_spread() -> float:
    try:
        from benchmarks.real_spread import LOG, median_robust_spread
    except ImportError:
        return BPI_SPREAD
    return median_robust_spread(LOG) if LOG.exists() else BPI_SPREAD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignments", type=int, default=2000, help="simulated assignments per scenario (>= 50)")
    parser.add_argument("--grid", type=int, default=0, help="assignments per grid cell (0 = no grid)")
    parser.add_argument("--real-spread", type=float, default=None,
                        help="the real log's spread (default: measured by benchmarks/real_spread.py, else 0.99)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--spreads", default="step,real", help="comma-separated, of step and real (default: both)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="scenarios run at once (default: one per core; the figures do not depend on it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen, spreads = args.scenarios.split(","), args.spreads.split(",")
    if not set(chosen) <= set(SCENARIOS) or not set(spreads) <= {"step", "real"}:
        parser.error("unknown scenario or spread")
    if args.assignments < 50:
        parser.error("at least 50 assignments per scenario")
    started = time.perf_counter()
    real = args.real_spread if args.real_spread is not None else _real_spread()
    cells = [(replace(s, sigma=sigma), args.assignments, 1 + i + 10 * k, s.name in TRIGGER)
             for k, sigma in enumerate((None, real)) if ("step", "real")[k] in spreads
             for i, s in enumerate(SCENARIOS.values()) if s.name in chosen]
    with ProcessPoolExecutor(max(1, args.processes)) as pool:  # each cell has its own seed: same figures
        done = list(pool.map(_cell, cells))
    rows = [dict(row, target=TARGETS.get(row["scenario"], ""), met=met(row), margin=margin(row)) for row in done]
    grid = []
    if args.grid:
        for sigma in (0.35, 0.45, 0.55):
            for n in (40, 60, 80, 120):
                planted = run(Scenario("planted", 0.8, 1.0, sessions=(n, n), sigma=sigma), args.grid,
                              100 + n + int(sigma * 100))
                null = run(Scenario("null", 1.0, 1.0, sessions=(n, n), sigma=sigma), args.grid,
                           200 + n + int(sigma * 100))
                grid.append({"sigma": sigma, "sessions": n, "power": planted["rate"], "oracle": planted["oracle"],
                             "false": null["rate"]})
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"real_spread": real, "scenarios": rows, "grid": grid, "seconds": round(elapsed, 1)},
                         indent=2))
        return
    print(f"{args.assignments} simulated assignments per scenario and spread; spreads: the steps' own (0.45-0.6) "
          f"and the BPI 2012 log's ({real}); {elapsed:.0f} s\n")
    print("| scenario | spread | `improved` | rate | MC SE | oracle | ratio | oracle on the same draws | paired "
          "estimate ± MC SE | oracle, season known | ratio | target | met | trigger as baseline "
          "| median effect vs peers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        oracle = f"{r['oracle']:.3f}" if r["oracle"] is not None else "-"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        paired = f"{r['paired']:.4f} ± {r['paired_se']:.4f}" if r["paired"] is not None else "-"
        known = f"{r['oracle_season_known']:.3f}" if r["oracle_season_known"] is not None else "-"
        known_ratio = f"{r['ratio_season_known']:.2f}" if r["ratio_season_known"] is not None else "-"
        trigger = f"{r['trigger_as_baseline']:.3f}" if r["trigger_as_baseline"] is not None else "-"
        ok = "-" if r["met"] is None else f"{'yes' if r['met'] else '**no**'} ({r['margin']:+.1f} SE)"
        effect = f"{r['median_effect_pct']:+.1f}%" if r["median_effect_pct"] is not None else "-"
        spread = "0.45-0.6" if r["spread"] == "step" else f"{r['spread']:.2f}"
        print(f"| {r['scenario']} | {spread} | {r['improved']} of {r['assignments']} | {r['rate']:.4f} | "
              f"{r['mc_se']:.3f} | {oracle} | {ratio} | {r['oracle_same_draws']:.3f} | {paired} | {known} | "
              f"{known_ratio} | {r['target'] or '-'} | {ok} | "
              f"{trigger} | {effect} |")
    if grid:
        print(f"\npower of `improved` (planted 20%) / the oracle's / false `improved` (nothing planted), {args.grid} "
              "assignments a cell, by log-spread and sessions a fortnight:\n")
        sessions = sorted({g["sessions"] for g in grid})
        print("| spread | " + " | ".join(f"{n} sessions" for n in sessions) + " |")
        print("|---|" + "---|" * len(sessions))
        for sigma in sorted({g["sigma"] for g in grid}):
            cells = [g for g in grid if g["sigma"] == sigma]
            print(f"| {sigma:.2f} | " + " | ".join(f"{g['power']:.2f} / {g['oracle']:.2f} / {g['false']:.3f}"
                                                  for g in cells) + " |")


if __name__ == "__main__":
    main()
