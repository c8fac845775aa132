"""Planning an assignment (coaching/planning.py): the verdict's standard error before any data
after the coaching, the smallest improvement it confirms, and the days a target needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coaching import planning
from coaching.evaluation import Criteria, PeerTimes, _yuen, evaluate
from coaching.planning import Volume, min_detectable_change, plan_windows, power, standard_error, window_variance

MANAGER = Volume(per_day=2.0, spread=0.5, sessions_seen=56)  # 28 sessions a fortnight
PEER = Volume(per_day=3.0, spread=0.4, sessions_seen=84)


def test_window_variance_is_the_evaluations_yuen_variance() -> None:
    times = np.exp(np.random.default_rng(4).normal(np.log(200_000), 0.55, 37))
    seen = planning.volume(times, days_seen=14)
    # the history's own window: the plan's variance is exactly the one the verdict computes
    assert window_variance(seen, 14) == pytest.approx(_yuen(times, Criteria().trim)[1], rel=1e-12)


def test_standard_error_and_detectable_change_by_hand() -> None:
    # manager: n = 2 x 14 = 28 sessions, 10% trimmed keeps h = 28 - 2 x 2 = 24
    #   Yuen: 0.5^2 x 27 / (24 x 23) = 0.0122283 per window, 0.0244565 for both
    # peer: n = 42, h = 42 - 2 x 4 = 34: 0.4^2 x 41 / (34 x 33) = 0.0058467 per window, 0.0116934 both;
    #   two such peers, precision-weighted: 1 / (2 / 0.0116934) = 0.0058467
    # total 0.0303032, x design effect 1.2 = 0.0363639, se = 0.190693
    se = standard_error(MANAGER, [PEER, PEER], pre_days=14, post_days=14, design_effect=1.2)
    assert se == pytest.approx(0.190693, abs=1e-6)
    # z(0.95) + z(0.80) = 1.644854 + 0.841621 = 2.486475; 1 - exp(-2.486475 x 0.190693) = 0.377588
    assert min_detectable_change(se) == pytest.approx(0.377588, abs=1e-5)
    assert power(min_detectable_change(se), se) == pytest.approx(0.80, abs=1e-9)
    # a 25% improvement: Phi(-log(0.75) / se - 1.644854) = Phi(1.508624 - 1.644854) = Phi(-0.13623) = 0.4458
    assert power(0.25, se) == pytest.approx(0.4458, abs=1e-3)
    assert power(0.0, se) == pytest.approx(Criteria().alpha)  # nothing planted: the verdict's own error rate


def test_the_detectable_change_shrinks_with_more_data_and_grows_with_spread() -> None:
    def mde(manager: Volume = MANAGER, days: int = 14, peers: int = 3, deff: float = 1.0) -> float:
        se = standard_error(manager, [PEER] * peers, pre_days=days, post_days=days, design_effect=deff)
        return min_detectable_change(se)  # type: ignore[return-value]

    assert mde(days=28) < mde(days=21) < mde(days=14) < mde(days=10)
    assert mde(Volume(4.0, 0.5, 112)) < mde() < mde(Volume(2.0, 0.8, 56))
    assert mde(peers=8) < mde(peers=1)
    assert mde(deff=1.5) > mde(deff=1.0)


def test_days_to_verdict_is_the_shortest_window_that_reaches_the_power() -> None:
    plan = plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.25, design_effect=1.1)
    days = plan.days_to_verdict
    assert days is not None and days > 14 and plan.confirmable is False
    assert plan.suggested_pre_days == days

    def reaches(d: int) -> float:
        se = standard_error(MANAGER, [PEER] * 4, pre_days=max(14, d), post_days=d, design_effect=1.1)
        return planning.availability(MANAGER.sessions(d)) * power(0.25, se)

    assert reaches(days) >= 0.8 > reaches(days - 1)
    bigger = plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.4, design_effect=1.1)
    assert bigger.confirmable and bigger.days_to_verdict < 14  # type: ignore[operator]
    smaller = plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.15, design_effect=1.1)
    assert smaller.days_to_verdict is not None and smaller.days_to_verdict > days
    assert plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.01).days_to_verdict is None


def test_a_window_that_may_fall_short_of_the_minimum_costs_power() -> None:
    # P(Poisson(20) >= 20) = 1 - P(<= 19) = 0.529743; P(Poisson(40) >= 20) = 0.999824 (scipy.stats.poisson.sf(19, mu))
    assert planning.availability(20) == pytest.approx(0.529743, abs=1e-6)
    assert planning.availability(40) == pytest.approx(0.999824, abs=1e-6)
    quiet = Volume(per_day=24 / 14, spread=0.5, sessions_seen=48)  # 24 expected in a fortnight
    plan = plan_windows(quiet, [PEER] * 4, pre_days=28, post_days=14, target_change=0.5)
    assert 0.8 < plan.availability < 0.9
    se = plan.standard_error
    assert plan.power_at_target == pytest.approx(plan.availability * power(0.5, se))
    # the detectable change is where the power, the chance of enough sessions included, is 80%
    assert plan.availability * power(plan.min_detectable_change, se) == pytest.approx(0.80)  # type: ignore[arg-type]
    assert plan.min_detectable_change > min_detectable_change(se)  # type: ignore[operator]
    thin = plan_windows(Volume(per_day=21 / 14, spread=0.5, sessions_seen=42), [PEER] * 4, pre_days=28, post_days=14)
    assert thin.availability < 0.8 and thin.min_detectable_change is None  # 80% is out of reach whatever the change


def test_a_plan_says_why_it_has_no_figure() -> None:
    few = plan_windows(Volume(1.0, 0.5, 28), [PEER], pre_days=14, post_days=14, target_change=0.3)
    assert few.reason == "few_sessions" and few.min_detectable_change is None and few.power_at_target == 0.0
    alone = plan_windows(MANAGER, [Volume(0.3, 0.5, 8)], pre_days=14, post_days=14, target_change=0.3)
    assert alone.reason == "no_peers" and alone.standard_error is None and alone.peers == 0
    # longer windows bring the manager past min_sessions: the reason goes
    assert plan_windows(Volume(1.0, 0.5, 28), [PEER], pre_days=21, post_days=21).reason is None


def test_design_effect_of_the_history_is_one_for_independent_sessions_and_more_for_shared_days() -> None:
    rng = np.random.default_rng(9)
    days = np.repeat(np.arange(20), 5)
    independent = np.exp(rng.normal(12, 0.5, 100))
    shared = np.exp(12 + rng.normal(0, 0.5, 20)[days] + rng.normal(0, 0.2, 100))
    assert planning.design_effect([(independent, days)]) < 1.3
    assert planning.design_effect([(shared, days)]) > 2.0


def test_stated_power_matches_the_evaluation_on_simulated_assignments() -> None:
    """The plan's power at its detectable change, against `evaluate` itself on 300 simulated
    assignments with independent sessions (benchmarks/planning.py runs the full check)."""
    rng = np.random.default_rng(21)
    sigma = 0.55 / math.sqrt(0.678747)  # the normal spread whose 10%-winsorised spread is 0.55
    manager, peer = Volume(3.0, 0.55, 0), Volume(3.0, 0.55, 0)
    se = standard_error(manager, [peer] * 5, pre_days=14, post_days=14)
    change = min_detectable_change(se)
    assert change is not None
    improved = 0
    for _ in range(300):
        def times(n: int, shift: float = 0.0) -> np.ndarray:
            return np.exp(np.log(180_000) + shift + rng.normal(0, sigma, n))

        peers = [PeerTimes(f"p{i}", times(42), times(42)) for i in range(5)]
        result = evaluate(times(42), times(42, math.log1p(-change)), peers, post_days=14,
                          criteria=Criteria(resamples=100))
        improved += result.verdict == "improved"
    assert improved / 300 == pytest.approx(0.80, abs=0.07)  # 3 standard errors of a 300-draw rate
