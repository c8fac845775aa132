"""The confidence of a drawdown flag: each level and each reason, by the rule in analysis/confidence.py."""

from __future__ import annotations

import pytest

from analysis.confidence import chance_by_luck, confidence, margin_past_limit

BAND = {"min_ms": 60_000, "max_ms": 240_000}


def judged(kind: str = "slow", *, n: int = 120, median_ms: float = 300_000, q_value: float | None = None,
           weeks: int = 4) -> tuple[str, str]:
    c = confidence(kind=kind, n=n, median_ms=median_ms, q_value=q_value, weeks_in_drawdown=weeks,  # type: ignore[arg-type]
                   window_weeks=4, min_sessions=20, **BAND)
    return c.level, c.why


def test_far_above_the_maximum_every_week_with_many_sessions_is_high() -> None:
    assert judged(median_ms=300_000) == ("high", "clear")  # 25% above the maximum, 4 of 4 weeks


def test_few_sessions_make_any_flag_low() -> None:
    assert judged(n=39, median_ms=600_000) == ("low", "few_sessions")
    assert judged(n=40, median_ms=600_000) == ("high", "clear")


def test_just_past_the_limit_is_medium() -> None:
    assert judged(median_ms=250_000) == ("medium", "near_limit")  # 4% above


def test_not_every_week_is_medium() -> None:
    assert judged(median_ms=300_000, weeks=3) == ("medium", "not_every_week")


def test_inside_the_band_is_at_most_medium_and_low_when_luck_could_explain_it() -> None:
    assert judged(median_ms=200_000, q_value=0.0004) == ("medium", "peer_only")
    assert judged(median_ms=200_000, q_value=0.03) == ("low", "peer_weak")
    assert judged(median_ms=200_000, q_value=None) == ("low", "peer_weak")


def test_fast_is_measured_against_the_minimum() -> None:
    assert margin_past_limit("fast", 30_000, 60_000, 240_000) == pytest.approx(0.5)
    assert judged("fast", median_ms=30_000) == ("high", "clear")
    assert judged("fast", median_ms=57_000) == ("medium", "near_limit")


def test_systemic_is_high_when_every_week_and_medium_otherwise() -> None:
    assert judged("systemic", median_ms=200_000) == ("high", "team_every_week")
    assert judged("systemic", median_ms=200_000, weeks=3) == ("medium", "not_every_week")


def test_chance_by_luck_in_odds() -> None:
    assert chance_by_luck(0.00071) == ("under", 1000)
    assert chance_by_luck(0.004) == ("under", 100)
    assert chance_by_luck(0.03) == ("under", 20)
    assert chance_by_luck(0.25) == ("about", 4)
    assert chance_by_luck(None) is None
