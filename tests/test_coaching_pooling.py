"""Effects that are not luck (coaching/pooling.py): each course's effect pooled toward its step's
average, checked against a hand-computed example, and two lucky assignments against nine steady ones."""

from __future__ import annotations

import math

import pytest

from coaching.pooling import Outcome, best, fit, pool


def test_the_model_of_a_step_by_hand() -> None:
    # log effects: A = [-0.1, -0.3] (mean -0.2), B = [0.0, 0.2] (mean 0.1), C = [-0.2] x 3 (mean -0.2)
    # within: (0.01 + 0.01 + 0.01 + 0.01 + 0) / (7 - 3) = 0.01
    # weights n / sigma^2: 200, 200, 300; fixed mean (-40 + 20 - 60) / 700 = -0.1142857
    # Q = 200 x 0.0857143^2 + 200 x 0.2142857^2 + 300 x 0.0857143^2 = 12.857143
    # tau^2 = (12.857143 - 2) / (700 - 170000 / 700) = 10.857143 / 457.142857 = 0.02375
    # mu with weights 1 / (0.01 / n + 0.02375): 34.7826, 34.7826, 36.9231 -> -10.86288 / 106.4883 = -0.10201
    model = fit([[-0.1, -0.3], [0.0, 0.2], [-0.2, -0.2, -0.2]])
    assert model is not None
    assert model.sigma2 == pytest.approx(0.01) and model.tau2 == pytest.approx(0.02375)
    assert model.mu == pytest.approx(-0.10201, abs=1e-5)
    assert model.mu_variance == pytest.approx(1 / 106.4883, rel=1e-4)


def test_pooled_effects_by_hand() -> None:
    effects = {"a": [-0.1, -0.3], "b": [0.0, 0.2], "c": [-0.2, -0.2, -0.2]}
    outcomes = [Outcome("offer", "course", key, "improved" if e < -0.15 else "no_change", math.expm1(e) * 100)
                for key, logs in effects.items() for e in logs]
    rows = {p.key: p for p in pool(outcomes)}
    # A: B_A = (0.01 / 2) / (0.005 + 0.02375) = 0.173913; theta = -0.10201 + 0.826087 x (-0.2 + 0.10201) = -0.182958
    a = rows["a"]
    assert a.shrinkage == pytest.approx(0.173913, abs=1e-6)
    assert a.pooled_effect_pct == pytest.approx(math.expm1(-0.182958) * 100, abs=1e-3)  # -16.72%
    # variance (1 - B) 0.005 + B^2 var(mu) = 0.00413043 + 0.0302457 x 0.00939070 = 0.00441446; half 1.96 x 0.066441
    low, high = a.pooled_ci_pct  # type: ignore[misc]
    assert low == pytest.approx(math.expm1(-0.182958 - 1.959964 * 0.0664414) * 100, abs=1e-2)
    assert high == pytest.approx(math.expm1(-0.182958 + 1.959964 * 0.0664414) * 100, abs=1e-2)
    assert a.raw_effect_pct == pytest.approx(math.expm1(-0.2) * 100)
    assert a.assignments == 2 and a.improved == 1 and a.step_effect_pct == pytest.approx(math.expm1(-0.10201) * 100,
                                                                                          abs=1e-3)
    assert [p.key for p in pool(outcomes)] == ["c", "a", "b"]  # C's three -18% beat A's two, whose mean is the same


def steady_and_lucky() -> list[Outcome]:
    se = 0.12  # an evaluation's typical standard error: 40-80 sessions a window
    # two assignments at -28% on average, nine spread as evaluations are (12% each) at -23%
    rows = [Outcome("offer", "course", "lucky", "improved", e, se) for e in (-30.0, -26.0)]
    rows += [Outcome("offer", "course", "steady", "improved" if e <= -15 else "no_change", e, se)
             for e in (-22.0, -38.0, -8.0, -32.0, -14.0, -35.0, -11.0, -29.0, -15.0)]
    rows += [Outcome("offer", "course", "usual", "no_change", e, se) for e in (-24.0, -2.0, -19.0, -8.0, -30.0, -5.0)]
    rows += [Outcome("offer", "course", "plain", "no_change", e, se) for e in (-22.0, 3.0, -21.0, -10.0, -6.0)]
    return rows


def test_two_lucky_assignments_rank_below_nine_steady_ones() -> None:
    outcomes = steady_and_lucky()
    rows = [p for p in pool(outcomes) if p.by == "course"]
    lucky, steady = (next(p for p in rows if p.key == k) for k in ("lucky", "steady"))
    assert lucky.raw_effect_pct < steady.raw_effect_pct  # type: ignore[operator]  # by the raw mean, lucky leads
    assert rows[0].key == "steady" and lucky.pooled_effect_pct > steady.pooled_effect_pct  # type: ignore[operator]
    assert lucky.shrinkage > 0.5 > steady.shrinkage  # type: ignore[operator]
    wide = lucky.pooled_ci_pct[1] - lucky.pooled_ci_pct[0]  # type: ignore[index]
    assert wide > steady.pooled_ci_pct[1] - steady.pooled_ci_pct[0]  # type: ignore[index]
    pick = best(pool(outcomes), "offer")
    assert pick is not None and pick.key == "steady" and (pick.improved, pick.assignments) == (6, 9)


def test_the_floor_of_the_within_spread_is_the_evaluations_own_error() -> None:
    # two courses whose effects agree within each course but not with each other: without the
    # evaluations' standard error the model would believe each pair exactly
    rows = [Outcome("offer", "course", "a", "improved", e, 0.12) for e in (-30.0, -30.5)]
    rows += [Outcome("offer", "course", "b", "no_change", e, 0.12) for e in (-5.0, -5.5)]
    sure = {p.key: p for p in pool([Outcome(o.step, o.by, o.key, o.verdict, o.effect_pct) for o in rows])}
    noisy = {p.key: p for p in pool(rows)}
    assert noisy["a"].shrinkage > sure["a"].shrinkage  # type: ignore[operator]
    assert Outcome.error_of([-30.0, -10.0]) == pytest.approx((math.log(0.9) - math.log(0.7)) / (2 * 1.644854), 1e-4)


def test_steps_are_pooled_apart_and_a_lone_effect_claims_no_interval() -> None:
    rows = pool([Outcome("offer", "mentor", "tom", "improved", -20.0), Outcome("needs", "mentor", "tom", "worse", 10.0),
                 Outcome("needs", "course", "x", "insufficient_data", None)])
    offer = next(p for p in rows if p.step == "offer")
    assert offer.pooled_effect_pct == pytest.approx(-20.0) and offer.pooled_ci_pct is None
    assert best(rows, "offer") is None  # nothing to recommend on one assignment
    x = next(p for p in rows if p.key == "x")
    needs = [p.key for p in rows if p.step == "needs"]
    assert x.pooled_effect_pct is None and x.assignments == 1 and needs == ["tom", "x"]  # unmeasured last
