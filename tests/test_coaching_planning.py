"""Planning an assignment (coaching/planning.py): the verdict's standard error before any data
after the coaching, the smallest improvement it confirms, and the days a target needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coaching import planning
from coaching.evaluation import Criteria, PeerTimes, _yuen, evaluate
from coaching.planning import (
    DayEffects,
    Volume,
    min_detectable_change,
    plan_windows,
    power,
    standard_error,
    window_variance,
)

MANAGER = Volume(per_day=2.0, spread=0.5, sessions_seen=56)  # 28 sessions a fortnight
PEER = Volume(per_day=3.0, spread=0.4, sessions_seen=84)


def test_window_variance_is_the_evaluations_yuen_variance() -> None:
    times = np.exp(np.random.default_rng(4).normal(np.log(200_000), 0.55, 37))
    seen = planning.volume(times, days_seen=14)
    # the history's own window: the plan's variance is exactly the one the verdict computes
    assert window_variance(seen, 14) == pytest.approx(_yuen(times, Criteria().trim)[1], rel=1e-12)


def test_standard_error_and_detectable_change_by_hand() -> None:
    # manager: n = 2 x 14 = 28 sessions, 5% trimmed keeps h = 28 - 2 x 1 = 26
    #   Yuen: 0.5^2 x 27 / (26 x 25) = 0.0103846 per window, 0.0207692 for both
    # peer: n = 42, h = 42 - 2 x 2 = 38: 0.4^2 x 41 / (38 x 37) = 0.0046657 per window, 0.0093314 both;
    #   two such peers, precision-weighted: 1 / (2 / 0.0093314) = 0.0046657
    # total 0.0254349, x design effect 1.2 = 0.0305219, se = 0.174705
    se = standard_error(MANAGER, [PEER, PEER], pre_days=14, post_days=14, design_effect=1.2)
    assert se == pytest.approx(0.174705, abs=1e-6)
    # z(0.95) + z(0.80) = 1.644854 + 0.841621 = 2.486475; 1 - exp(-2.486475 x 0.174705) = 0.352347
    assert min_detectable_change(se) == pytest.approx(0.352347, abs=1e-5)
    assert power(min_detectable_change(se), se) == pytest.approx(0.80, abs=1e-9)
    # a 25% improvement: Phi(-log(0.75) / se - 1.644854) = Phi(1.646671 - 1.644854) = Phi(0.001817) = 0.5007
    assert power(0.25, se) == pytest.approx(0.5007, abs=1e-3)
    assert power(0.0, se) == pytest.approx(Criteria().alpha)  # nothing planted: the verdict's own error rate


def test_days_everyone_shares_add_what_the_managers_days_leave_uncancelled() -> None:
    # The verdict adds the shared day's variance times the squared mismatch of the manager's share of
    # sessions on each day with the peers' (evaluation._difference_in_differences). Sessions falling
    # on a window's D working days at random, that mismatch is (1 - 1/D) / n per window and person,
    # the peers' weighted by their squared precision weights. 28 days before: D = 20; 14 after: D = 10.
    from coaching import evaluation

    plain = standard_error(MANAGER, [PEER, PEER], pre_days=28, post_days=14)
    shared = standard_error(MANAGER, [PEER, PEER], pre_days=28, post_days=14, shared_day_variance=0.01)
    own = (1 - 1 / 20) / 56 + (1 - 1 / 10) / 28  # the manager: 56 sessions before, 28 after
    peer = (1 - 1 / 20) / 84 + (1 - 1 / 10) / 42  # each peer: 84 and 42, weight 1/2 each
    assert shared ** 2 == pytest.approx(plain ** 2 + 0.01 * (own + 2 * 0.25 * peer), rel=1e-12)  # type: ignore[operator]
    test = evaluation.planned_test(evaluation.Volume(56, 28, 0.5), [evaluation.Volume(84, 42, 0.4)] * 2,
                                   shared_day_variance=0.01)
    assert test is not None and test.standard_error == pytest.approx(shared)


def test_day_effects_of_the_history() -> None:
    # Six people over 20 working days with a team day (sd 0.2) everyone shares and no day of their own.
    rng = np.random.default_rng(3)
    team = rng.normal(0, 0.2, 20)
    history = []
    for _ in range(6):
        days = rng.integers(0, 20, 100)
        history.append((np.exp(12 + team[days] + rng.normal(0, 0.4, 100)), days))
    effects = planning.day_effects(history, days_seen=28)
    assert 0.02 < effects.shared_variance < 0.07  # 0.2^2 = 0.04, from 20 days of it
    assert 0.7 < effects.design_effect < 1.3 and effects.design_effect_variance > 0
    # the verdict pools its design effect over 42 days a person, the history over 28: less noise
    assert effects.design_effect_variance_over(42) == pytest.approx(effects.design_effect_variance * 28 / 42)
    with_days = plan_windows(MANAGER, [PEER] * 4, pre_days=28, post_days=14, days=effects)
    without = plan_windows(MANAGER, [PEER] * 4, pre_days=28, post_days=14,
                           days=DayEffects(effects.design_effect, effects.design_effect_variance, 0.0, 28))
    assert with_days.standard_error > without.standard_error  # type: ignore[operator]
    # the design effect's noise costs degrees of freedom, and so a larger detectable change
    calm = plan_windows(MANAGER, [PEER] * 4, pre_days=28, post_days=14, days=DayEffects(1.0, 0.0, 0.0, 28))
    noisy = plan_windows(MANAGER, [PEER] * 4, pre_days=28, post_days=14, days=DayEffects(1.0, 0.05, 0.0, 28))
    assert noisy.degrees_of_freedom < calm.degrees_of_freedom  # type: ignore[operator]
    assert noisy.min_detectable_change > calm.min_detectable_change  # type: ignore[operator]
    assert planning.day_effects([], days_seen=28) == DayEffects()


def test_the_detectable_change_shrinks_with_more_data_and_grows_with_spread() -> None:
    def mde(manager: Volume = MANAGER, days: int = 14, peers: int = 3, deff: float = 1.0) -> float:
        se = standard_error(manager, [PEER] * peers, pre_days=days, post_days=days, design_effect=deff)
        return min_detectable_change(se)  # type: ignore[return-value]

    assert mde(days=28) < mde(days=21) < mde(days=14) < mde(days=10)
    assert mde(Volume(4.0, 0.5, 112)) < mde() < mde(Volume(2.0, 0.8, 56))
    assert mde(peers=8) < mde(peers=1)
    assert mde(deff=1.5) > mde(deff=1.0)


def test_days_to_verdict_is_the_shortest_window_that_reaches_the_power() -> None:
    plan = plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.25, days=DayEffects(1.1))
    days = plan.days_to_verdict
    assert days is not None and days > 14 and plan.confirmable is False
    assert plan.suggested_pre_days == days

    def reaches(d: int) -> float:
        at = plan_windows(MANAGER, [PEER] * 4, pre_days=max(14, d), post_days=d, days=DayEffects(1.1))
        assert at.degrees_of_freedom is not None and 30 < at.degrees_of_freedom < 300  # the verdict's t, not a z
        return at.availability * power(0.25, at.standard_error, df=at.degrees_of_freedom)

    assert reaches(days) >= 0.8 > reaches(days - 1)
    bigger = plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.4, days=DayEffects(1.1))
    assert bigger.confirmable and bigger.days_to_verdict < 14  # type: ignore[operator]
    smaller = plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.15, days=DayEffects(1.1))
    assert smaller.days_to_verdict is not None and smaller.days_to_verdict > days
    assert plan_windows(MANAGER, [PEER] * 4, pre_days=14, post_days=14, target_change=0.01).days_to_verdict is None


def test_a_window_that_may_fall_short_of_the_minimum_costs_power() -> None:
    # P(Poisson(20) >= 20) = 1 - P(<= 19) = 0.529743; P(Poisson(40) >= 20) = 0.999824 (scipy.stats.poisson.sf(19, mu))
    assert planning.availability(20) == pytest.approx(0.529743, abs=1e-6)
    assert planning.availability(40) == pytest.approx(0.999824, abs=1e-6)
    quiet = Volume(per_day=24 / 14, spread=0.5, sessions_seen=48)  # 24 expected in a fortnight
    plan = plan_windows(quiet, [PEER] * 4, pre_days=28, post_days=14, target_change=0.5)
    assert 0.8 < plan.availability < 0.9
    se, df = plan.standard_error, plan.degrees_of_freedom
    assert plan.power_at_target == pytest.approx(plan.availability * power(0.5, se, df=df))  # type: ignore[arg-type]
    # the detectable change is where the power, the chance of enough sessions included, is 80%
    assert plan.availability * power(plan.min_detectable_change, se, df=df) == pytest.approx(0.80)  # type: ignore[arg-type]
    assert plan.min_detectable_change > min_detectable_change(se, df=df)  # type: ignore[arg-type,operator]
    thin = plan_windows(Volume(per_day=21 / 14, spread=0.5, sessions_seen=42), [PEER] * 4, pre_days=28, post_days=14)
    assert thin.availability < 0.8 and thin.min_detectable_change is None  # 80% is out of reach whatever the change


def test_a_plan_says_why_it_has_no_figure() -> None:
    few = plan_windows(Volume(1.0, 0.5, 28), [PEER], pre_days=14, post_days=14, target_change=0.3)
    assert few.reason == "few_sessions" and few.min_detectable_change is None and few.power_at_target == 0.0
    alone = plan_windows(MANAGER, [Volume(0.3, 0.5, 8)], pre_days=14, post_days=14, target_change=0.3)
    assert alone.reason == "no_peers" and alone.standard_error is None and alone.peers == 0
    assert alone.degrees_of_freedom is None
    # no spread at all: no variance to estimate, a normal's critical value, and no infinity in the JSON
    still = plan_windows(Volume(2.0, 0.0, 56), [Volume(3.0, 0.0, 84)], pre_days=14, post_days=14, target_change=0.3)
    assert still.standard_error < 1e-5 and still.degrees_of_freedom is None  # type: ignore[operator]
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
    sigma = 0.55 / math.sqrt(0.831268)  # the normal spread whose 5%-winsorised spread is 0.55
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
