"""Drawdown rules on hand-made pairs, and every flag transition, valid and invalid."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import numpy as np
import pytest
from scipy import stats

from analysis.bands import Band
from analysis.flags import (
    ALLOWED,
    AutoUpdate,
    FlagStatus,
    InvalidTransition,
    PairInput,
    Thresholds,
    assess,
    auto_update,
    date_onsets,
    pair_from_sessions,
    transition,
    with_earlier,
)
from analysis.stats import Window, slower_than_peers_p

BAND = Band(min_ms=100_000, reference_ms=200_000, max_ms=400_000)
WINDOW = Window(date(2025, 3, 15), date(2025, 3, 28))
DAYS = np.array([date(2025, 3, 1) + timedelta(days=i) for i in range(28)], dtype="datetime64[D]")
T = Thresholds()


def spread(median: float, n: int = 31, sigma: float = 0.2) -> np.ndarray:
    """n session times, symmetric in log around `median` (exactly the median for odd n)."""
    return np.round(median * np.exp(sigma * stats.norm.ppf((np.arange(n) + 0.5) / n)))


def pair(
    manager: str,
    median: float,
    *,
    n: int = 31,
    weekly: tuple[float | None, ...] | None = None,
    daily: np.ndarray | None = None,
    team: str = "north",
    step: str = "offer",
    sigma: float = 0.2,
) -> PairInput:
    return PairInput(
        team=team, manager=manager, step=step, band=BAND, durations_ms=spread(median, n, sigma),
        daily_days=DAYS, daily_medians_ms=np.full(28, median) if daily is None else daily,
        weekly_medians_ms=(median,) * 4 if weekly is None else weekly,
    )


def team_of(*pairs: PairInput, normal: int = 4) -> list[PairInput]:
    """The given pairs plus `normal` managers at the reference, same team and step."""
    first = pairs[0]
    peers = [pair(f"normal-{i}", 200_000, team=first.team, step=first.step) for i in range(normal)]
    return [*pairs, *peers]


def verdicts(pairs: list[PairInput], thresholds: Thresholds = T) -> dict[str, object]:
    result = assess(pairs, thresholds, WINDOW)
    return {a.manager: a for a in result.assessments}


def test_slow_by_band_is_flagged_with_minutes_lost() -> None:
    result = assess(team_of(pair("ana", 500_000)), T, WINDOW)
    [flag] = result.drawdowns
    assert (flag.kind, flag.manager, flag.step, flag.n, flag.median_ms) == ("slow", "ana", "offer", 31, 500_000)
    assert flag.window == WINDOW and flag.band == BAND and flag.severity == 1
    assert flag.minutes_lost_per_week == pytest.approx(300_000 * 31 * 7 / 14 / 60_000)
    assert flag.impact_minutes_per_week == flag.minutes_lost_per_week
    assert flag.q_value is not None and flag.q_value < 0.05
    assert flag.periods_in_drawdown == 4
    assert "above the max band" in flag.reasons[0]


def test_slow_by_peers_needs_significance_and_materiality() -> None:
    ana = verdicts(team_of(pair("ana", 260_000)))["ana"]  # 30% above the reference, under the max
    assert ana.status == "slow"  # type: ignore[attr-defined]
    assert "slower than the team's other managers" in ana.reasons[0]  # type: ignore[attr-defined]


def test_significantly_slower_but_not_material_is_ok() -> None:
    ana = verdicts(team_of(pair("ana", 215_000, n=301)))["ana"]  # 7.5% above the reference
    assert ana.q_value < 0.05  # type: ignore[attr-defined]
    assert ana.status == "ok"  # type: ignore[attr-defined]
    assert "materiality" in ana.reasons[0]  # type: ignore[attr-defined]


def test_material_but_not_significant_is_ok() -> None:
    steady = np.full(28, 200_000.0)  # daily medians at the reference: nothing drifting either
    ana = verdicts(team_of(pair("ana", 260_000, sigma=1.5, daily=steady), normal=1))["ana"]
    assert ana.q_value > 0.05 and ana.status == "ok"  # type: ignore[attr-defined]


def test_too_few_sessions_is_insufficient_and_never_flagged() -> None:
    result = assess(team_of(pair("ana", 1_000_000, n=19)), T, WINDOW)
    ana = next(a for a in result.assessments if a.manager == "ana")
    assert ana.status == "insufficient" and ana.q_value is None and ana.n == 19
    assert result.drawdowns == ()


def test_a_pair_without_sessions_in_the_window_is_insufficient() -> None:
    empty = PairInput("north", "ana", "offer", BAND, np.array([]), DAYS[:0], np.array([]), (None,) * 4)
    result = assess([empty], T, WINDOW)
    assert result.assessments[0].status == "insufficient" and result.assessments[0].summary is None


def test_min_sessions_is_a_setting() -> None:
    ana = verdicts(team_of(pair("ana", 500_000, n=19)), Thresholds(min_sessions=15))["ana"]
    assert ana.status == "slow"  # type: ignore[attr-defined]


def test_fast_is_flagged_as_possible_skipped_work() -> None:
    result = assess(team_of(pair("bo", 80_000)), T, WINDOW)
    [flag] = result.drawdowns
    assert (flag.kind, flag.manager, flag.minutes_lost_per_week) == ("fast", "bo", 0.0)
    assert flag.impact_minutes_per_week == pytest.approx(120_000 * 31 * 7 / 14 / 60_000)
    assert "skipped work" in flag.reasons[0]


def test_slow_in_two_of_four_weeks_is_not_persistent() -> None:
    ana = verdicts(team_of(pair("ana", 500_000, weekly=(None, 200_000, 500_000, 500_000))))["ana"]
    # not a drawdown, but on watch: the weekly medians are rising past the max band
    assert ana.status == "watch" and ana.periods_in_drawdown == 2  # type: ignore[attr-defined]
    assert "not persistent" in ana.reasons[-2]  # type: ignore[attr-defined]


def test_slow_in_three_of_four_weeks_is_persistent() -> None:
    ana = verdicts(team_of(pair("ana", 500_000, weekly=(200_000, 230_000, 500_000, 500_000))))["ana"]
    assert ana.status == "slow" and ana.periods_in_drawdown == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["ewma", "cusum"])
def test_the_start_date_comes_from_the_daily_medians(method: str) -> None:
    wobble = np.exp(0.08 * np.sin(np.arange(28) * 2.1))
    daily = 200_000 * wobble * np.where(np.arange(28) >= 12, 2.5, 1.0)
    [flag] = assess(team_of(pair("ana", 500_000, daily=daily)), Thresholds(drift_method=method), WINDOW).drawdowns
    assert flag.start_date == date(2025, 3, 13)
    assert "began on 2025-03-13" in flag.reasons


def test_a_drawdown_without_a_visible_change_is_not_dated() -> None:
    [flag] = assess(team_of(pair("ana", 500_000, daily=np.full(28, 200_000.0))), T, WINDOW).drawdowns
    assert flag.start_date is None and "start not dated" in flag.reasons[-1]


def test_a_large_share_of_the_team_slow_is_one_systemic_flag() -> None:
    pairs = team_of(pair("ana", 500_000), pair("bo", 450_000), normal=3)  # 2 of 5 = 40%
    result = assess(pairs, T, WINDOW)
    [flag] = result.drawdowns
    assert (flag.kind, flag.manager, flag.managers, flag.team, flag.step) == (
        "systemic", None, ("ana", "bo"), "north", "offer"
    )
    assert flag.n == 5 * 31
    assert {a.manager: a.status for a in result.assessments}["ana"] == "slow"  # the assessment keeps the verdict


def test_a_systemic_flag_loses_the_time_of_its_slow_managers_only() -> None:
    # cy sits 7.5% above the reference every day: ok, so above the reference but losing no time
    pairs = team_of(pair("ana", 500_000), pair("bo", 450_000), pair("cy", 215_000), normal=2)  # 2 of 5 slow
    result = assess(pairs, T, WINDOW)
    [flag] = result.drawdowns
    by = {a.manager: a for a in result.assessments}
    assert flag.kind == "systemic" and by["cy"].status == "ok"
    assert by["cy"].minutes_lost_per_week == 0.0
    assert by["cy"].minutes_above_reference_per_week == pytest.approx(15_000 * 31 * 7 / 14 / 60_000)
    slow_total = by["ana"].minutes_lost_per_week + by["bo"].minutes_lost_per_week  # type: ignore[operator]
    assert flag.minutes_lost_per_week == pytest.approx(slow_total) == flag.impact_minutes_per_week
    # the time lost of all drawdowns is the time lost of all slow pairs
    assert sum(f.minutes_lost_per_week for f in result.drawdowns) == pytest.approx(
        sum(a.minutes_lost_per_week or 0.0 for a in result.assessments))


def test_time_lost_is_the_minutes_above_the_reference_of_a_slow_pair_only() -> None:
    result = assess([*team_of(pair("ana", 260_000)), *team_of(pair("bo", 80_000), normal=3),
                     *team_of(pair("cy", 215_000, weekly=(200_000, 260_000, 320_000, 380_000), step="needs"))],
                    T, WINDOW)  # fmt: skip
    by = {a.manager: a for a in result.assessments}
    ana, bo, cy = by["ana"], by["bo"], by["cy"]
    assert ana.status == "slow" and ana.band.min_ms < ana.summary.median_ms < ana.band.max_ms  # type: ignore[union-attr]
    assert ana.minutes_lost_per_week == ana.minutes_above_reference_per_week == pytest.approx(
        60_000 * 31 * 7 / 14 / 60_000)
    assert cy.status == "watch" and cy.minutes_lost_per_week == 0.0 and cy.minutes_above_reference_per_week > 0
    assert bo.status == "fast" and bo.minutes_lost_per_week == bo.minutes_above_reference_per_week == 0.0
    fast = next(f for f in result.drawdowns if f.kind == "fast")
    assert fast.minutes_lost_per_week == 0.0 and fast.impact_minutes_per_week > 0  # ranked, never time lost
    empty = assess([PairInput("north", "dee", "offer", BAND, np.array([]), DAYS[:0], np.array([]), (None,) * 4)],
                   T, WINDOW).assessments[0]  # fmt: skip
    assert empty.minutes_lost_per_week is None and empty.minutes_above_reference_per_week is None


def test_a_small_share_of_the_team_slow_is_flagged_per_manager() -> None:
    pairs = team_of(pair("ana", 500_000), pair("bo", 450_000), normal=4)  # 2 of 6 = 33%
    result = assess(pairs, T, WINDOW)
    assert sorted((f.kind, f.manager) for f in result.drawdowns) == [("slow", "ana"), ("slow", "bo")]


def test_systemic_needs_the_minimum_number_of_slow_managers() -> None:
    result = assess([pair("ana", 500_000), pair("bo", 200_000)], T, WINDOW)  # 1 of 2, but only one person
    assert [(f.kind, f.manager) for f in result.drawdowns] == [("slow", "ana")]


def test_the_peer_group_leaves_out_managers_outside_the_band() -> None:
    pairs = [pair("ana", 230_000), pair("normal", 200_000), pair("skipper", 60_000), pair("slowpoke", 900_000)]
    ana = verdicts(pairs)["ana"]
    expected = slower_than_peers_p(spread(230_000), spread(200_000))
    assert ana.p_value == pytest.approx(expected)  # type: ignore[attr-defined]


def test_bh_runs_over_all_tests_of_the_run() -> None:
    pairs = [*team_of(pair("ana", 260_000)), *team_of(pair("cy", 240_000, step="needs"))]
    result = assess(pairs, T, WINDOW)
    tested = [a for a in result.assessments if a.p_value is not None]
    assert len(tested) == 10
    expected = stats.false_discovery_control([a.p_value for a in tested], method="bh")
    np.testing.assert_allclose([a.q_value for a in tested], expected, rtol=1e-12)


def test_flags_are_ranked_by_impact() -> None:
    pairs = [*team_of(pair("ana", 500_000)), *team_of(pair("cy", 900_000, team="south")), *team_of(pair("bo", 80_000))]
    ranked = [(f.severity, f.manager) for f in assess(pairs, T, WINDOW).drawdowns]
    assert ranked == [(1, "cy"), (2, "ana"), (3, "bo")]


def test_pair_from_sessions_splits_window_and_history() -> None:
    days = np.repeat(DAYS, 2)
    times = np.where(days >= np.datetime64(WINDOW.since), 500_000.0, 200_000.0)
    built = pair_from_sessions(team="north", manager="ana", step="offer", band=BAND, durations_ms=times, days=days,
                               window=WINDOW)
    assert built.durations_ms.size == 28 and set(built.durations_ms) == {500_000.0}
    assert built.daily_days.size == 28
    assert built.weekly_medians_ms == (200_000.0, 200_000.0, 500_000.0, 500_000.0)


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold fdr is out of range"):
        Thresholds(fdr=0)
    with pytest.raises(ValueError, match="threshold persistent_periods is out of range"):
        Thresholds(persistent_periods=5)


# --- lifecycle ---------------------------------------------------------------------------------

VALID = sorted((a, b) for a, targets in ALLOWED.items() for b in targets)
INVALID = sorted((a, b) for a, b in itertools.product(FlagStatus, FlagStatus) if b not in ALLOWED[a])


def test_the_transition_table() -> None:
    S = FlagStatus
    assert VALID == sorted([
        (S.OPEN, S.ACKNOWLEDGED), (S.OPEN, S.COACHING), (S.OPEN, S.RESOLVED), (S.OPEN, S.DISMISSED),
        (S.ACKNOWLEDGED, S.COACHING), (S.ACKNOWLEDGED, S.RESOLVED), (S.ACKNOWLEDGED, S.DISMISSED),
        (S.COACHING, S.RESOLVED), (S.COACHING, S.DISMISSED),
        (S.RESOLVED, S.OPEN), (S.DISMISSED, S.OPEN),
    ])


@pytest.mark.parametrize(("current", "target"), VALID)
def test_every_valid_transition(current: FlagStatus, target: FlagStatus) -> None:
    assert transition(current, target, "because") is target
    assert transition(current.value, target.value, "because") is target


@pytest.mark.parametrize(("current", "target"), INVALID)
def test_every_invalid_transition_is_rejected(current: FlagStatus, target: FlagStatus) -> None:
    with pytest.raises(InvalidTransition, match=f"cannot go from {current.value} to {target.value}"):
        transition(current, target, "because")


@pytest.mark.parametrize("reason", [None, "", "   "])
@pytest.mark.parametrize("current", [FlagStatus.OPEN, FlagStatus.ACKNOWLEDGED, FlagStatus.COACHING])
def test_dismissing_needs_a_reason(current: FlagStatus, reason: str | None) -> None:
    with pytest.raises(InvalidTransition, match="a reason is required to dismiss a flag"):
        transition(current, FlagStatus.DISMISSED, reason)


@pytest.mark.parametrize("current", [FlagStatus.RESOLVED, FlagStatus.DISMISSED])
def test_reopening_needs_a_reason(current: FlagStatus) -> None:
    with pytest.raises(InvalidTransition, match="a reason is required to reopen a flag"):
        transition(current, FlagStatus.OPEN)


def test_resolving_by_hand_needs_no_reason() -> None:
    assert transition("coaching", "resolved") is FlagStatus.RESOLVED


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(InvalidTransition, match="unknown flag status 'closed'"):
        transition("open", "closed", "x")
    assert issubclass(InvalidTransition, ValueError)


@pytest.mark.parametrize("current", [FlagStatus.OPEN, FlagStatus.ACKNOWLEDGED, FlagStatus.COACHING])
def test_an_active_flag_resolves_itself_after_two_periods_without_its_condition(current: FlagStatus) -> None:
    assert auto_update(current, False, 0) == AutoUpdate(current, 1)
    resolved = auto_update(current, False, 1)
    assert (resolved.status, resolved.periods_without_condition, resolved.changed) == (FlagStatus.RESOLVED, 2, True)
    assert resolved.note == "condition absent for 2 periods: resolved automatically"
    assert auto_update(current, True, 1) == AutoUpdate(current, 0)  # the count restarts when it holds again


def test_a_resolved_flag_reopens_when_its_condition_recurs() -> None:
    reopened = auto_update(FlagStatus.RESOLVED, True, 5)
    assert (reopened.status, reopened.changed, reopened.note) == (FlagStatus.OPEN, True, "condition recurred: reopened")
    assert auto_update(FlagStatus.RESOLVED, False, 5) == AutoUpdate(FlagStatus.RESOLVED, 6)


def test_a_dismissed_flag_reopens_only_on_a_new_episode() -> None:
    assert auto_update(FlagStatus.DISMISSED, True, 0) == AutoUpdate(FlagStatus.DISMISSED, 0)
    assert auto_update(FlagStatus.DISMISSED, True, 1) == AutoUpdate(FlagStatus.DISMISSED, 0)
    assert auto_update(FlagStatus.DISMISSED, True, 2).status is FlagStatus.OPEN
    assert auto_update(FlagStatus.DISMISSED, False, 3) == AutoUpdate(FlagStatus.DISMISSED, 4)


def test_auto_update_checks_its_count() -> None:
    with pytest.raises(ValueError, match="periods_without_condition must be 0 or more"):
        auto_update(FlagStatus.OPEN, False, -1)


def test_ranking_a_team_once_gives_each_managers_own_scipy_p_value() -> None:
    from analysis.flags import _peer_p_values
    from analysis.stats import summarize

    rng = np.random.default_rng(5)
    band = Band(20_000, 60_000, 120_000)
    window = Window(date(2026, 3, 2), date(2026, 3, 15))
    scale = {"a": 1.0, "b": 1.1, "c": 0.95, "d": 3.0, "e": 1.0}  # d is outside the band: not a peer
    pairs = []
    for manager, factor in scale.items():
        times = np.round(rng.lognormal(np.log(60_000 * factor), 0.4, size=40), -3)  # rounded: many ties
        pairs.append(PairInput("north", manager, "offer", band, times, np.array([], dtype="datetime64[D]"),
                               np.array([]), (None,) * 4))
    summaries = [summarize(p.durations_ms, band, window.days) for p in pairs]
    got = _peer_p_values(pairs, summaries, Thresholds())
    normal = [p for p in pairs if p.manager != "d"]
    for pair, p_value in zip(pairs, got, strict=True):
        peers = np.concatenate([q.durations_ms for q in normal if q is not pair])
        expected = stats.mannwhitneyu(pair.durations_ms, peers, alternative="greater").pvalue
        assert p_value == pytest.approx(expected, rel=1e-9, abs=1e-15), pair.manager


def test_pair_from_sessions_is_the_same_whatever_the_order_of_the_sessions() -> None:
    rng = np.random.default_rng(5)
    days = np.datetime64(DAYS[0]) + rng.integers(0, 35, size=500).astype("timedelta64[D]")  # some past the window
    times = np.round(rng.lognormal(12.5, 0.5, size=500), -3)
    order = np.lexsort((times, days))
    kwargs = {"team": "north", "manager": "ana", "step": "offer", "band": BAND, "window": WINDOW}
    shuffled = pair_from_sessions(durations_ms=times, days=days, **kwargs)
    in_order = pair_from_sessions(durations_ms=times[order], days=days[order], **kwargs)
    assert np.array_equal(np.sort(shuffled.durations_ms), np.sort(in_order.durations_ms))
    assert np.array_equal(shuffled.daily_days, in_order.daily_days)
    assert np.array_equal(shuffled.daily_medians_ms, in_order.daily_medians_ms)
    assert shuffled.weekly_medians_ms == in_order.weekly_medians_ms


# -- the onset on 90 days, and the watch ------------------------------------------------------


def test_a_drawdown_that_began_before_the_look_back_is_dated_on_the_earlier_days() -> None:
    earlier_days = np.array([date(2025, 1, 1) + timedelta(days=i) for i in range(59)], dtype="datetime64[D]")
    earlier = np.where(earlier_days >= np.datetime64("2025-02-10"), 500_000.0, 200_000.0)
    earlier *= np.exp(0.05 * np.sin(np.arange(59) * 2.1))
    days = np.repeat(DAYS, 2)
    slow = pair_from_sessions(team="north", manager="ana", step="offer", band=BAND, days=days,
                              durations_ms=np.full(days.size, 500_000.0), window=WINDOW,
                              earlier=(earlier_days, earlier))
    [flag] = assess(team_of(slow), T, WINDOW).drawdowns
    assert (flag.start_date, flag.start_at_least) == (date(2025, 2, 10), False)
    assert "began on 2025-02-10" in flag.reasons
    # without the earlier days, the look-back's first day, and only "at least"
    alone = pair_from_sessions(team="north", manager="ana", step="offer", band=BAND, days=days,
                               durations_ms=np.full(days.size, 500_000.0), window=WINDOW)
    [flag] = assess(team_of(alone), T, WINDOW).drawdowns
    assert (flag.start_date, flag.start_at_least) == (date(2025, 3, 1), True)
    assert "at least since 2025-03-01" in flag.reasons


def test_earlier_days_inside_the_sessions_days_are_left_to_the_sessions() -> None:
    days = np.repeat(DAYS, 2)
    built = pair_from_sessions(team="north", manager="ana", step="offer", band=BAND, days=days,
                               durations_ms=np.full(days.size, 500_000.0), window=WINDOW,
                               earlier=(DAYS[:3], np.full(3, 1.0)))
    assert built.onset_days is not None and built.onset_days.size == 28
    assert set(built.onset_medians_ms) == {500_000.0}  # type: ignore[arg-type]
    mismatched = pair_from_sessions(team="north", manager="ana", step="offer", band=BAND, days=days,
                                    durations_ms=np.full(days.size, 500_000.0), window=WINDOW,
                                    earlier=(DAYS[:3], np.full(2, 1.0)))
    assert mismatched.onset_days is None  # bad input is ignored, not a crash


def test_a_systemic_flag_takes_the_earliest_start_and_its_at_least() -> None:
    early = np.full(28, 500_000.0)  # slow from the first day: at least since then
    late = 200_000 * np.where(np.arange(28) >= 10, 2.4, 1.0) * np.exp(0.05 * np.sin(np.arange(28)))
    [flag] = assess(team_of(pair("ana", 500_000, daily=early), pair("bo", 450_000, daily=late), normal=3),
                    T, WINDOW).drawdowns
    assert (flag.kind, flag.start_date, flag.start_at_least) == ("systemic", date(2025, 3, 1), True)


def test_daily_medians_drifting_up_put_a_pair_on_watch_not_in_the_drawdowns() -> None:
    rising = 200_000 * np.where(np.arange(28) >= 22, 1.7, 1.0) * np.exp(0.05 * np.sin(np.arange(28) * 2.1))
    result = assess(team_of(pair("ana", 205_000, daily=rising)), T, WINDOW)
    ana = next(a for a in result.assessments if a.manager == "ana")
    assert ana.status == "watch" and "drifting up" in ana.reasons[-1]
    assert result.drawdowns == () and result.watches == (ana,)


def test_weekly_medians_heading_past_the_max_put_a_pair_on_watch() -> None:
    ana = verdicts(team_of(pair("ana", 215_000, weekly=(200_000, 260_000, 320_000, 380_000))))["ana"]
    assert ana.status == "watch" and "within 2 weeks" in ana.reasons[-1]  # type: ignore[attr-defined]
    steady = verdicts(team_of(pair("ana", 215_000, weekly=(380_000, 320_000, 260_000, 240_000))))["ana"]
    assert steady.status == "ok"  # type: ignore[attr-defined]


def test_a_steady_manager_a_little_above_the_reference_is_not_on_watch() -> None:
    ana = verdicts(team_of(pair("ana", 215_000)))["ana"]  # 7.5% above, every day
    assert ana.status == "ok"  # type: ignore[attr-defined]


def test_dating_the_drawdowns_again_on_a_longer_history_is_the_same_as_assessing_with_it() -> None:
    earlier_days = np.array([date(2025, 1, 1) + timedelta(days=i) for i in range(59)], dtype="datetime64[D]")
    earlier = np.where(earlier_days >= np.datetime64("2025-02-10"), 500_000.0, 200_000.0)
    days = np.repeat(DAYS, 2)
    plain = team_of(pair_from_sessions(team="north", manager="ana", step="offer", band=BAND, days=days,
                                       durations_ms=np.full(days.size, 500_000.0), window=WINDOW))
    longer = [with_earlier(p, earlier_days, earlier) if p.manager == "ana" else p for p in plain]
    again = date_onsets(assess(plain, T, WINDOW), longer, T)
    assert again == assess(longer, T, WINDOW)
    assert date_onsets(assess(longer, T, WINDOW, date_starts=False), longer, T) == again  # dated once, later
    assert again.drawdowns[0].start_date == date(2025, 2, 10)
    with pytest.raises(ValueError, match="one pair per assessment"):
        date_onsets(again, longer[:1], T)
