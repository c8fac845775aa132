"""Bands: consistency errors, the band in force for a day and a team, suggestions from data."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from analysis.bands import Band, BandError, BandVersion, band_in_force, suggest_band


def test_a_consistent_band_holds_its_values() -> None:
    band = Band(min_ms=60_000, reference_ms=240_000, max_ms=600_000)
    assert (band.min_ms, band.reference_ms, band.max_ms) == (60_000, 240_000, 600_000)


def test_equal_values_are_consistent() -> None:
    Band(min_ms=1, reference_ms=1, max_ms=1)


def test_band_error_is_a_value_error() -> None:
    assert issubclass(BandError, ValueError)


def test_min_above_reference_is_named_with_both_values() -> None:
    with pytest.raises(BandError, match=r"^min must be at most reference \(got min 300000 > reference 240000\)$"):
        Band(min_ms=300_000, reference_ms=240_000, max_ms=600_000)


def test_reference_above_max_is_named_with_both_values() -> None:
    with pytest.raises(BandError, match=r"reference must be at most max \(got reference 700000 > max 600000\)"):
        Band(min_ms=60_000, reference_ms=700_000, max_ms=600_000)


@pytest.mark.parametrize("min_ms", [0, -5])
def test_min_must_be_positive(min_ms: int) -> None:
    with pytest.raises(BandError, match=rf"min must be more than 0 ms \(got min {min_ms}\)"):
        Band(min_ms=min_ms, reference_ms=240_000, max_ms=600_000)


@pytest.mark.parametrize("value", [1.5, True, "60000", None])
def test_durations_must_be_whole_milliseconds(value: object) -> None:
    with pytest.raises(BandError, match="max must be a whole number of milliseconds"):
        Band(min_ms=1, reference_ms=2, max_ms=value)  # type: ignore[arg-type]


def test_bands_are_frozen() -> None:
    band = Band(1, 2, 3)
    with pytest.raises(AttributeError):
        band.min_ms = 2  # type: ignore[misc]


# --- band_in_force ----------------------------------------------------------------------------

JAN, MAR, JUN = date(2025, 1, 1), date(2025, 3, 1), date(2025, 6, 1)
DEFAULT_JAN = BandVersion(JAN, None, Band(10, 20, 30))
DEFAULT_JUN = BandVersion(JUN, None, Band(11, 21, 31))
SALES_MAR = BandVersion(MAR, "sales", Band(12, 22, 32))


def test_the_latest_version_on_or_before_the_day_wins() -> None:
    versions = [DEFAULT_JAN, DEFAULT_JUN]
    assert band_in_force(versions, date(2025, 5, 31), None) is DEFAULT_JAN
    assert band_in_force(versions, JUN, None) is DEFAULT_JUN
    assert band_in_force(list(reversed(versions)), date(2025, 7, 1), "any") is DEFAULT_JUN


def test_nothing_is_in_force_before_the_first_version() -> None:
    assert band_in_force([DEFAULT_JAN], date(2024, 12, 31), None) is None
    assert band_in_force([], JAN, "sales") is None


def test_a_team_override_beats_the_default_even_a_newer_one() -> None:
    versions = [DEFAULT_JAN, SALES_MAR, DEFAULT_JUN]
    assert band_in_force(versions, date(2025, 7, 1), "sales") is SALES_MAR
    assert band_in_force(versions, date(2025, 2, 1), "sales") is DEFAULT_JAN  # override not yet in force


def test_another_team_override_does_not_apply() -> None:
    assert band_in_force([DEFAULT_JAN, SALES_MAR], date(2025, 4, 1), "support") is DEFAULT_JAN
    assert band_in_force([DEFAULT_JAN, SALES_MAR], date(2025, 4, 1), None) is DEFAULT_JAN


def test_a_same_day_correction_recorded_later_wins() -> None:
    corrected = BandVersion(JAN, None, Band(9, 19, 29))
    assert band_in_force([DEFAULT_JAN, corrected], MAR, None) is corrected


# --- suggest_band ------------------------------------------------------------------------------

FIXED = np.array([31_000, 45_000, 52_000, 60_000, 61_000, 75_000, 80_000, 90_000, 120_000, 400_000] * 3)


def test_pooled_suggestion_is_p10_median_p90_of_all_sessions() -> None:
    suggestion = suggest_band(FIXED, method="pooled")
    p10, median, p90 = np.quantile(FIXED, [0.1, 0.5, 0.9])
    assert suggestion.band == Band(round(p10), round(median), round(p90))
    assert (suggestion.n, suggestion.method, suggestion.managers) == (30, "pooled", None)
    assert suggestion.reference_ci_ms is not None
    low, high = suggestion.reference_ci_ms
    assert low <= suggestion.band.reference_ms <= high


def test_balanced_suggestion_weighs_managers_equally() -> None:
    prolific = np.full(1_000, 100_000)
    others = np.tile(np.linspace(150_000, 250_000, 30), 4)
    times = np.concatenate([prolific, others])
    managers = np.array(["prolific"] * 1_000 + [f"m{i // 30}" for i in range(120)])
    assert suggest_band(times, method="pooled").band.reference_ms == 100_000
    balanced = suggest_band(times, managers=managers)
    assert balanced.method == "balanced" and balanced.managers == 5
    assert 150_000 <= balanced.band.reference_ms <= 250_000


def test_balanced_with_equal_counts_is_the_plain_quantile() -> None:
    managers = np.repeat(["a", "b", "c"], 10)
    suggestion = suggest_band(FIXED, managers=managers)
    expected = np.quantile(FIXED, [0.1, 0.5, 0.9], method="inverted_cdf")
    assert suggestion.band == Band(*(round(float(v)) for v in expected))
    assert suggestion.reference_ci_ms is not None
    assert suggest_band(FIXED, managers=managers).reference_ci_ms == suggestion.reference_ci_ms  # seeded


def test_balanced_needs_the_managers() -> None:
    with pytest.raises(BandError, match="needs the manager of each session"):
        suggest_band(FIXED)
    with pytest.raises(BandError, match="one entry per session"):
        suggest_band(FIXED, managers=np.array(["a", "b"]))


def test_too_few_sessions_to_suggest() -> None:
    with pytest.raises(BandError, match=r"at least 20 sessions .* \(got 19\)"):
        suggest_band(FIXED[:19], method="pooled")


@pytest.mark.parametrize("bad", [0, -1, np.nan, np.inf])
def test_durations_must_be_positive_and_finite(bad: float) -> None:
    times = FIXED.astype(float)
    times[3] = bad
    with pytest.raises(BandError, match=r"positive and finite \(1 are not\)"):
        suggest_band(times, method="pooled")


def test_unknown_method() -> None:
    with pytest.raises(BandError, match="unknown method 'mean'"):
        suggest_band(FIXED, method="mean")  # type: ignore[arg-type]


def test_balanced_quantiles_agree_with_numpy_weighted_quantiles() -> None:
    rng = np.random.default_rng(7)
    times = np.round(rng.lognormal(11, 0.5, size=56))
    managers = np.array(["a"] * 32 + ["b"] * 16 + ["c"] * 8)  # weights 1/32, 1/16, 1/8: exact in binary
    weights = 1.0 / np.array([32] * 32 + [16] * 16 + [8] * 8)
    expected = np.quantile(times, [0.1, 0.5, 0.9], weights=weights, method="inverted_cdf")
    assert suggest_band(times, managers=managers).band == Band(*(round(float(v)) for v in expected))
