"""Where the extra time goes: the parts add up to the excess exactly, each part answers to its own
cause, and the rounded parts a page shows add up to the rounded total."""

from __future__ import annotations

import itertools
import random

import pytest

from analysis.decomposition import Usage, apportion, decompose, profile

MIN = 60_000


def usage(sessions: int, visits_per_session: float, active_min: float, idle_min: float = 0.0,
          hidden_min: float = 0.0) -> Usage:
    """`sessions` sessions of `visits_per_session` visits, each visit that many minutes of each kind."""
    visits = round(sessions * visits_per_session)
    return Usage(sessions, visits, visits * active_min * MIN, visits * idle_min * MIN, visits * hidden_min * MIN)


def test_the_example_adds_up_to_the_excess() -> None:
    # 28 sessions in 14 days = 14 a week; the team: 1.2 visits of 2 min; the manager: 1.6 visits of 3 + 0.5 + 0.25 min
    mine, team = usage(28, 1.5, 3.0, 0.5, 0.25), usage(100, 1.2, 2.0)
    d = decompose(mine, team, 14)
    assert d is not None
    assert d.sessions_per_week == 14
    # the manager's week: 14 x 1.5 x 3.75 = 78.75 min; the team's equivalent 14 x 1.2 x 2 = 33.6 min
    assert d.total_minutes == pytest.approx(78.75 - 33.6)
    assert sum(d.parts) == pytest.approx(d.total_minutes, abs=1e-9)
    assert d.idle_hidden_minutes == pytest.approx(d.idle_minutes + d.hidden_minutes)
    # Shapley: each change valued at the mean of the other factor's two levels
    assert d.more_visits_minutes == pytest.approx(14 * (1.5 - 1.2) * (3.75 + 2.0) / 2)
    assert d.longer_visits_minutes == pytest.approx(14 * (3.0 - 2.0) * (1.5 + 1.2) / 2)
    assert d.idle_minutes == pytest.approx(14 * 0.5 * 1.35) and d.hidden_minutes == pytest.approx(14 * 0.25 * 1.35)
    assert d.mine.visits_per_session == 1.5 and d.team.ms_per_visit == 2 * MIN


def test_each_cause_shows_in_its_own_part_only() -> None:
    team = usage(200, 1.2, 2.0, 0.2)
    only_returns = decompose(usage(40, 1.8, 2.0, 0.2), team, 14)
    only_longer = decompose(usage(40, 1.2, 3.0, 0.2), team, 14)
    only_idle = decompose(usage(40, 1.2, 2.0, 0.2, hidden_min=1.0), team, 14)
    assert only_returns and only_longer and only_idle
    zero = pytest.approx(0, abs=1e-9)
    assert only_returns.more_visits_minutes > 0 and only_returns.longer_visits_minutes == zero \
        and only_returns.idle_hidden_minutes == zero
    assert only_longer.longer_visits_minutes > 0 and only_longer.more_visits_minutes == zero \
        and only_longer.idle_hidden_minutes == zero
    assert only_idle.hidden_minutes > 0 and only_idle.idle_minutes == zero and only_idle.longer_visits_minutes == zero
    # a manager like the team has nothing to split
    same = decompose(usage(40, 1.2, 2.0, 0.2), team, 14)
    assert same is not None and same.total_minutes == pytest.approx(0) and all(p == pytest.approx(0)
                                                                               for p in same.parts)


def test_parts_add_up_whatever_the_figures_and_a_part_can_be_negative() -> None:
    rng = random.Random(7)
    negative_seen = False
    for _ in range(2000):
        mine = Usage(rng.randint(1, 300), 0, 0, 0, 0)
        mine = Usage(mine.sessions, mine.sessions + rng.randint(0, 400), rng.uniform(0, 1e9), rng.uniform(0, 1e8),
                     rng.uniform(0, 1e8))
        team = Usage(rng.randint(1, 3000), 0, 0, 0, 0)
        team = Usage(team.sessions, team.sessions + rng.randint(0, 4000), rng.uniform(0, 1e10), rng.uniform(0, 1e9),
                     rng.uniform(0, 1e9))
        d = decompose(mine, team, rng.randint(1, 28))
        assert d is not None
        assert sum(d.parts) == pytest.approx(d.total_minutes, rel=1e-9, abs=1e-6)
        negative_seen = negative_seen or (d.total_minutes > 0 and min(d.parts) < 0)
    assert negative_seen  # e.g. fewer returns than the team, outweighed by longer visits


def test_the_split_does_not_depend_on_an_order() -> None:
    # swapping which factor is "first" changes nothing: the interaction is shared, not handed to one
    mine, team = usage(30, 2.0, 4.0), usage(90, 1.0, 2.0)
    d = decompose(mine, team, 14)
    assert d is not None
    # sequential splits would give returns 15 x 1.0 x 2 = 30 or 15 x 1.0 x 4 = 60 min; Shapley is their mean
    assert d.more_visits_minutes == pytest.approx(15 * 1.0 * 3.0)
    assert d.longer_visits_minutes == pytest.approx(15 * 2.0 * 1.5)


def test_nothing_to_split_without_sessions_or_days() -> None:
    team = usage(90, 1.0, 2.0)
    assert decompose(Usage(0, 0, 0, 0, 0), team, 14) is None
    assert decompose(usage(10, 1.0, 2.0), Usage(0, 0, 0, 0, 0), 14) is None
    assert decompose(usage(10, 1.0, 2.0), team, 0) is None
    assert profile(Usage(3, 0, 0, 0, 0)) is None


def test_pooled_usage_is_session_weighted() -> None:
    pooled = Usage.pooled([usage(10, 1.0, 2.0), usage(30, 2.0, 4.0)])
    assert pooled == Usage(40, 70, 10 * 2 * MIN + 60 * 4 * MIN, 0, 0)
    p = profile(pooled)
    assert p is not None and p.visits_per_session == 70 / 40


@pytest.mark.parametrize("unit", [1.0, 0.1])
def test_rounded_parts_add_up_to_the_rounded_total(unit: float) -> None:
    assert apportion(41.6, [24.6, 12.4, 4.6]) == (42, [25, 12, 5])
    assert apportion(3.0, [1.4, 1.3, 0.3]) == (3, [2, 1, 0])  # one by one: 1 + 1 + 0 = 2
    rng = random.Random(1)
    for _ in range(3000):
        parts = [rng.uniform(-80, 120) for _ in range(3)]
        total, rounded = apportion(sum(parts), parts, unit)
        assert round(sum(rounded), 6) == round(total, 6)
        assert abs(total - sum(parts)) <= unit / 2 + 1e-9
        assert all(abs(r - p) < unit + 1e-9 for r, p in zip(rounded, parts, strict=True))


def test_apportion_keeps_exact_parts_and_never_says_minus_zero() -> None:
    assert apportion(6.0, [1.0, 2.0, 3.0]) == (6, [1, 2, 3])
    total, parts = apportion(-0.2, [-0.1, -0.05, -0.05])
    assert str(total) == "0.0" and all(str(p) == "0.0" for p in parts)
    for combo in itertools.product([0.25, -0.25, 0.75], repeat=3):
        total, parts = apportion(sum(combo), list(combo), 0.1)
        assert round(sum(parts), 6) == round(total, 6)
