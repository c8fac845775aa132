"""Statistics against scipy and numpy on fixed data, and the drift chart on hand-made days."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from scipy import stats

from analysis.bands import Band
from analysis.stats import (
    Onset,
    Window,
    bh_qvalues,
    daily_medians,
    drift_onset,
    drift_start,
    ewma_alarm_now,
    minutes_above_reference_per_week,
    order_by_group_then_value,
    slower_than_peers_p,
    summarize,
    weekly_medians,
)

BAND = Band(min_ms=60_000, reference_ms=120_000, max_ms=240_000)
TIMES = np.array([50_000, 70_000, 95_000, 110_000, 130_000, 150_000, 180_000, 200_000, 260_000, 900_000])
MINE = np.array([130, 150, 170, 210, 95, 160, 400, 180, 175, 220, 140, 300], dtype=float)
PEERS = np.array([100, 120, 90, 140, 110, 130, 95, 105, 150, 125, 115, 85, 100, 135, 120], dtype=float)
P_VALUES = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216, 0.222, 0.251, 0.269, 0.275, 0.34]


def test_window_counts_both_ends() -> None:
    assert Window(date(2025, 3, 1), date(2025, 3, 14)).days == 14
    with pytest.raises(ValueError, match="since must be on or before until"):
        Window(date(2025, 3, 2), date(2025, 3, 1))


def test_summary_matches_numpy_quantiles_and_counts_the_band() -> None:
    summary = summarize(TIMES, BAND, window_days=14)
    p25, p50, p75, p90 = np.percentile(TIMES, [25, 50, 75, 90])
    assert summary.n == 10
    assert (summary.p25_ms, summary.median_ms, summary.p75_ms, summary.p90_ms) == pytest.approx((p25, p50, p75, p90))
    assert summary.median_ms == 140_000
    assert summary.share_above_max == pytest.approx(0.2)  # 260 000 and 900 000
    assert summary.share_below_min == pytest.approx(0.1)  # 50 000


def test_minutes_above_reference_is_the_median_excess_times_sessions_per_week() -> None:
    # 20 000 ms over the reference, 10 sessions in 14 days = 5 a week: 100 000 ms = 1.667 minutes
    assert summarize(TIMES, BAND, window_days=14).minutes_above_reference_per_week == pytest.approx(100_000 / 60_000)
    assert minutes_above_reference_per_week(180_000, 120_000, n=30, window_days=7) == pytest.approx(30.0)


def test_no_minutes_above_at_or_under_the_reference() -> None:
    assert minutes_above_reference_per_week(100_000, 120_000, n=30, window_days=14) == 0.0
    assert minutes_above_reference_per_week(120_000, 120_000, n=30, window_days=14) == 0.0
    with pytest.raises(ValueError, match="window_days must be positive"):
        minutes_above_reference_per_week(1, 1, n=1, window_days=0)


def test_summary_needs_sessions() -> None:
    with pytest.raises(ValueError, match="no sessions"):
        summarize(np.array([]), BAND, window_days=14)


def test_peer_test_is_scipy_one_sided_mann_whitney() -> None:
    expected = stats.mannwhitneyu(MINE, PEERS, alternative="greater").pvalue
    assert slower_than_peers_p(MINE, PEERS) == pytest.approx(expected, rel=1e-12)
    assert slower_than_peers_p(MINE, PEERS) < 0.01
    assert slower_than_peers_p(PEERS, MINE) > 0.99  # one-sided: faster is not slower


def test_peer_test_on_small_samples_uses_scipy_exact_method() -> None:
    mine, peers = np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0, 4.0])
    expected = stats.mannwhitneyu(mine, peers, alternative="greater").pvalue
    assert slower_than_peers_p(mine, peers) == pytest.approx(expected)


def test_peer_test_on_identical_times_is_not_significant() -> None:
    assert slower_than_peers_p(np.full(30, 5.0), np.full(40, 5.0)) == 1.0


def test_peer_test_needs_both_samples() -> None:
    with pytest.raises(ValueError, match="both samples need sessions"):
        slower_than_peers_p(MINE, np.array([]))


def test_bh_qvalues_match_scipy() -> None:
    expected = stats.false_discovery_control(P_VALUES, method="bh")
    np.testing.assert_allclose(bh_qvalues(P_VALUES), expected, rtol=1e-12)


def test_bh_qvalues_keep_the_input_order_and_ties() -> None:
    shuffled = [0.04, 0.01, 0.03, 0.04, 0.9]
    np.testing.assert_allclose(bh_qvalues(shuffled), stats.false_discovery_control(shuffled), rtol=1e-12)
    assert bh_qvalues([]).size == 0
    assert bh_qvalues([1.0, 1.0]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("bad", [[-0.1], [1.5], [np.nan]])
def test_bh_rejects_values_that_are_not_p_values(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        bh_qvalues(bad)


def test_daily_medians_per_day_sorted() -> None:
    days = [date(2025, 3, 4), date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 4), date(2025, 3, 3)]
    unique_days, medians = daily_medians(np.array([30, 10, 10, 20, 40]), days)
    assert unique_days.astype(str).tolist() == ["2025-03-03", "2025-03-04"]
    assert medians.tolist() == [25.0, 20.0]


def test_weekly_medians_are_the_last_periods_oldest_first() -> None:
    until = date(2025, 3, 28)
    days, times = [], []
    for week, median in enumerate([100.0, 200.0, 300.0, 400.0]):  # oldest first
        for d in range(6):
            days.append(until - timedelta(days=7 * (3 - week) + d))
            times.append(median + (d - 2.5) * 2)
    days.append(until - timedelta(days=28))  # before the four weeks: ignored
    times.append(9_999.0)
    assert weekly_medians(np.array(times), days, until) == (100.0, 200.0, 300.0, 400.0)
    assert weekly_medians(np.array(times), days, until, min_sessions=7) == (None, None, None, None)
    assert weekly_medians(np.array(times), days, until, periods=2) == (300.0, 400.0)


# --- drift start ---------------------------------------------------------------------------------

START = date(2025, 3, 3)
DAYS = [START + timedelta(days=i) for i in range(28)]
WOBBLE = np.exp(0.08 * np.sin(np.arange(28) * 2.1))  # a deterministic +-8% day-to-day wobble


def step_change(day: int, factor: float) -> np.ndarray:
    return 120_000 * WOBBLE * np.where(np.arange(28) >= day, factor, 1.0)


@pytest.mark.parametrize("method", ["ewma", "cusum"])
def test_drift_start_dates_a_step_change(method: str) -> None:
    assert drift_start(DAYS, step_change(12, 1.5), 120_000, method=method) == DAYS[12]  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["ewma", "cusum"])
def test_drift_start_is_none_without_a_change(method: str) -> None:
    assert drift_start(DAYS, step_change(28, 1.0), 120_000, method=method) is None  # type: ignore[arg-type]


def test_drift_start_for_a_fast_drawdown_looks_down() -> None:
    assert drift_start(DAYS, step_change(20, 0.5), 120_000, direction="fast") == DAYS[20]
    assert drift_start(DAYS, step_change(20, 0.5), 120_000, direction="slow") is None


def test_drift_from_the_first_day_starts_on_the_first_day() -> None:
    assert drift_start(DAYS, step_change(0, 1.6), 120_000) == DAYS[0]


def test_drift_start_accepts_unsorted_days() -> None:
    order = np.arange(28)[::-1]
    days = np.array(DAYS, dtype="datetime64[D]")[order]
    assert drift_start(days, step_change(12, 1.5)[order], 120_000) == DAYS[12]


def test_drift_start_needs_a_few_days() -> None:
    assert drift_start(DAYS[:2], [100.0, 400.0], 120_000) is None
    with pytest.raises(ValueError, match="one median per day"):
        drift_start(DAYS, [1.0], 120_000)


def test_drift_start_is_not_pulled_early_by_a_manager_a_little_above_the_reference() -> None:
    daily = step_change(15, 1.6) * 1.06  # 6% above the reference all along, then a drawdown on day 15
    assert drift_start(DAYS, daily, 120_000) == DAYS[15]


@pytest.mark.parametrize("seed", range(6))
def test_fast_peer_test_equals_scipy_with_ties_and_sizes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mine = np.round(rng.lognormal(5, 0.5, size=int(rng.integers(9, 200))), int(rng.integers(0, 2)))
    peers = np.round(rng.lognormal(5.1, 0.5, size=int(rng.integers(9, 900))), int(rng.integers(0, 2)))
    expected = stats.mannwhitneyu(mine, peers, alternative="greater").pvalue
    assert slower_than_peers_p(mine, peers) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_daily_medians_equal_numpy_per_day() -> None:
    rng = np.random.default_rng(3)
    days = np.datetime64("2026-01-01") + rng.integers(0, 9, size=300).astype("timedelta64[D]")
    times = rng.lognormal(5, 1, size=300)
    got_days, got = daily_medians(times, days)
    assert list(got_days) == sorted(set(days))
    assert np.allclose(got, [np.median(times[days == d]) for d in got_days])


def test_sessions_already_in_order_give_the_same_figures_as_shuffled_ones() -> None:
    """Storage returns sessions ordered by day, then time, and the statistics skip their own sort
    then: the figures must be the very same numbers, ties and a session past `until` included."""
    rng = np.random.default_rng(7)
    until = date(2026, 1, 28)
    days = np.datetime64("2026-01-01") + rng.integers(0, 30, size=2_000).astype("timedelta64[D]")
    times = np.round(rng.lognormal(11, 0.6, size=2_000), -2)  # rounded: many ties
    order = np.lexsort((times, days))
    for size in (0, 1, 2, 7, 2_000):
        shuffled_days, shuffled = days[:size], times[:size]
        sorted_days, in_order = shuffled_days[order[order < size]], shuffled[order[order < size]]
        got_days, got = daily_medians(in_order, sorted_days)
        want_days, want = daily_medians(shuffled, shuffled_days)
        assert np.array_equal(got_days, want_days) and np.array_equal(got, want)
        for periods, least in ((4, 5), (2, 1)):
            got_weeks = weekly_medians(in_order, sorted_days, until, periods=periods, min_sessions=least)
            assert got_weeks == weekly_medians(shuffled, shuffled_days, until, periods=periods, min_sessions=least)
            ends = [np.datetime64(until) - np.timedelta64(7 * (periods - k), "D") for k in range(periods + 1)]
            weeks = [shuffled[(shuffled_days > first) & (shuffled_days <= last)]
                     for first, last in zip(ends[:-1], ends[1:], strict=True)]
            assert got_weeks == tuple(float(np.median(w)) if w.size >= least else None for w in weeks)


# -- the onset on a longer history ------------------------------------------------------------

LONG = np.array([date(2025, 1, 1) + timedelta(days=i) for i in range(90)], dtype="datetime64[D]")


def _noisy(levels: np.ndarray, seed: int = 4) -> np.ndarray:
    return 120_000 * levels * np.exp(np.random.default_rng(seed).normal(0, 0.08, levels.size))


def test_drift_onset_dates_a_drawdown_weeks_before_the_last_four() -> None:
    onset = drift_onset(LONG, _noisy(np.where(np.arange(90) >= 30, 1.8, 1.0)), 120_000)
    assert onset == Onset(LONG[30].astype(object), at_least=False)


def test_drift_onset_says_at_least_when_the_data_begins_inside_the_drawdown() -> None:
    onset = drift_onset(LONG, _noisy(np.full(90, 1.8)), 120_000)
    assert onset is not None and onset.at_least and onset.day == date(2025, 1, 1)


def test_drift_onset_dates_a_gradual_drawdown_by_the_start_of_its_ramp() -> None:
    ramp = np.clip((np.arange(90) - 40 + 1) / 15, 0, 1)  # 1.0 to 2.0 over two weeks from day 40
    onset = drift_onset(LONG, _noisy(np.exp(ramp * np.log(2.0))), 120_000)
    assert onset is not None and not onset.at_least
    assert abs((onset.day - date(2025, 2, 10)).days) <= 3  # a two-means split said about a week later


@pytest.mark.parametrize("medians", [[np.nan] * 5, [-1.0] * 5, [0.0] * 5, [np.inf, 1.0, 2.0, 3.0, 4.0]])
def test_drift_onset_gives_no_date_on_bad_medians(medians: list[float]) -> None:
    assert drift_onset(DAYS[:5], medians, 120_000) is None
    assert drift_onset(DAYS[:5], [100_000.0] * 5, float("nan")) is None


def test_drift_onset_refuses_what_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="numbers"):
        drift_onset(DAYS[:3], ["a", "b", "c"], 120_000)  # type: ignore[list-item]


def test_the_ewma_alarm_now_is_on_the_last_day_only() -> None:
    drifting = 120_000 * np.where(np.arange(28) >= 22, 1.6, 1.0) * np.exp(0.05 * np.sin(np.arange(28)))
    assert ewma_alarm_now(drifting, 120_000)
    assert not ewma_alarm_now(drifting[:22], 120_000)
    assert not ewma_alarm_now([np.nan, 1.0, 2.0], 120_000)


def test_order_by_group_then_value_sorts_as_lexsort_does() -> None:
    rng = np.random.default_rng(4)
    values = rng.integers(0, 50, 5_000).astype(float)  # many ties
    for groups in (rng.integers(0, 3, 5_000), np.datetime64("2026-01-01") + rng.integers(0, 90, 5_000),
                   rng.integers(0, 1 << 40, 5_000)):  # the last too far apart for the radix sort
        order = order_by_group_then_value(groups, values)
        expected = np.lexsort((values, groups))
        assert np.array_equal(groups[order], groups[expected]) and np.array_equal(values[order], values[expected])
    assert order_by_group_then_value(np.array([], dtype=int), np.array([])).size == 0


def test_the_summary_percentiles_are_numpys_to_the_last_bit() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4, 5, 7, 10, 101, 2_000):
        for decimals in (0, 2):  # with and without ties
            times = np.round(rng.lognormal(10, 1, n), decimals)
            summary = summarize(times, BAND, 28)
            expected = np.percentile(times, [25, 50, 75, 90])
            assert [summary.p25_ms, summary.median_ms, summary.p75_ms, summary.p90_ms] == expected.tolist()


def test_the_ewma_alarm_now_is_the_last_point_of_the_whole_chart() -> None:
    from analysis.stats import MEDIAN_MOVING_RANGE_TO_SIGMA, _alarms, _median

    rng = np.random.default_rng(11)
    agreed = 0
    for n in (3, 5, 14, 28, 60):
        for drift in (0.0, 0.01, 0.03):
            medians = 120_000 * np.exp(rng.normal(0, 0.1, n) + drift * np.arange(n))
            x = np.log(medians / 130_000)
            sigma = max(_median(np.abs(np.diff(x))) / MEDIAN_MOVING_RANGE_TO_SIGMA, 0.02)
            whole = bool(_alarms(x, sigma, "ewma", 0.2, 3.0, 0.5, 4.0)[-1])
            assert ewma_alarm_now(medians, 130_000) == whole
            agreed += whole
    assert agreed  # some of them alarm
