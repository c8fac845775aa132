"""Time bands per step: what a session on a step should take, and how to propose one from data.

A band has three durations in milliseconds: `min` (faster than this suggests skipped work),
`reference` (the typical time the process is designed around) and `max` (slower than this is a
drawdown). Bands are versioned by the date they take effect and may be overridden per team;
`band_in_force` picks the version that applies to a day and a team.

Storage, the CLI and the audit live elsewhere; this module only validates and computes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
from scipy import stats

SuggestMethod = Literal["balanced", "pooled"]

#: Below this many sessions a P10 or P90 rests on one or two sessions: too few to propose a band.
MIN_SESSIONS_TO_SUGGEST = 20
#: Resamples of managers for the confidence interval of a balanced reference; fixed seed so a
#: suggestion shown twice shows the same interval.
BOOTSTRAP_RESAMPLES = 400


class BandError(ValueError):
    """A band that does not hold together, or data that cannot support a suggestion."""


@dataclass(frozen=True)
class Band:
    """Durations in milliseconds; consistency is 0 < min <= reference <= max."""

    min_ms: int
    reference_ms: int
    max_ms: int

    def __post_init__(self) -> None:
        for name in ("min_ms", "reference_ms", "max_ms"):
            value = getattr(self, name)
            # bool is an int subclass; True as a duration is always a mistake upstream
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise BandError(f"{name[:-3]} must be a whole number of milliseconds (got {value!r})")
        if self.min_ms <= 0:
            raise BandError(f"min must be more than 0 ms (got min {self.min_ms})")
        if self.min_ms > self.reference_ms:
            raise BandError(
                f"min must be at most reference (got min {self.min_ms} > reference {self.reference_ms})"
            )
        if self.reference_ms > self.max_ms:
            raise BandError(
                f"reference must be at most max (got reference {self.reference_ms} > max {self.max_ms})"
            )


@dataclass(frozen=True)
class BandVersion:
    """A band for one step that takes effect on `effective_from`; `team` None is the site default."""

    effective_from: date
    team: str | None
    band: Band


@dataclass(frozen=True)
class SuggestedBand:
    """A proposed band with what it rests on, for the `bands suggest` table."""

    band: Band
    n: int
    managers: int | None
    method: SuggestMethod
    #: 95% interval of the reference: how much the proposal could move with other sessions.
    reference_ci_ms: tuple[int, int] | None


def band_in_force(versions: Iterable[BandVersion], on_date: date, team: str | None) -> BandVersion | None:
    """The version of one step's band that applies to `team` on `on_date`, or None if none yet.

    A team override in force beats the site default, even an older override against a newer
    default: an override exists because that team works differently, and a change of the
    default does not change that. Among versions of the same kind, the latest `effective_from`
    on or before the day wins; for two with the same date, the one later in `versions` wins, so
    pass versions in the order they were recorded and a same-day correction replaces the first.
    """
    best_team: BandVersion | None = None
    best_default: BandVersion | None = None
    for version in versions:
        if version.effective_from > on_date:
            continue
        if version.team is None:
            if best_default is None or version.effective_from >= best_default.effective_from:
                best_default = version
        elif version.team == team:
            if best_team is None or version.effective_from >= best_team.effective_from:
                best_team = version
    return best_team if best_team is not None else best_default


def suggest_band(
    durations_ms: np.ndarray,
    *,
    managers: np.ndarray | None = None,
    method: SuggestMethod = "balanced",
) -> SuggestedBand:
    """Propose min / reference / max = P10 / median / P90 of session times on one step.

    `balanced` (the default) weighs every manager equally: each session counts 1 / (that
    manager's sessions), so one prolific manager does not set the band for everyone. It needs
    `managers`, the manager of each session. `pooled` is the plain quantiles of all sessions.
    Quantiles, not mean and standard deviation, because step times are heavily right-skewed.
    """
    times = np.asarray(durations_ms, dtype=float)
    if times.ndim != 1:
        raise BandError("durations must be a flat array of session times")
    bad = int(np.count_nonzero(~np.isfinite(times) | (times <= 0)))
    if bad:
        raise BandError(f"durations must be positive and finite ({bad} are not)")
    if times.size < MIN_SESSIONS_TO_SUGGEST:
        raise BandError(f"at least {MIN_SESSIONS_TO_SUGGEST} sessions are needed to suggest a band (got {times.size})")

    if method == "pooled":
        p10, median, p90 = np.quantile(times, [0.10, 0.50, 0.90])
        ci = stats.quantile_test(times, q=float(median), p=0.5).confidence_interval(0.95)
        low, high = float(ci.low), float(ci.high)
        n_managers = None if managers is None else len(np.unique(np.asarray(managers)))
        reference_ci = (round(low), round(high)) if np.isfinite(low) and np.isfinite(high) else None
    elif method == "balanced":
        if managers is None:
            raise BandError("the balanced method needs the manager of each session (or use method='pooled')")
        labels = np.asarray(managers)
        if labels.shape != times.shape:
            raise BandError(f"managers must have one entry per session (got {labels.size} for {times.size})")
        codes = np.unique(labels, return_inverse=True)[1]
        p10, median, p90 = _balanced_quantiles(times, codes, (0.10, 0.50, 0.90))
        n_managers = int(codes.max()) + 1
        reference_ci = _balanced_reference_ci(times, codes) if n_managers >= 2 else None
    else:
        raise BandError(f"unknown method {method!r}: use 'balanced' or 'pooled'")

    band = Band(
        min_ms=max(1, round(float(p10))),
        reference_ms=max(1, round(float(median))),
        max_ms=max(1, round(float(p90))),
    )
    return SuggestedBand(band=band, n=int(times.size), managers=n_managers, method=method, reference_ci_ms=reference_ci)


def _balanced_quantiles(times: np.ndarray, codes: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Weighted inverted-CDF quantiles: the first time whose cumulative weight reaches q.

    Written out rather than numpy's weighted quantile because the cumulative sums of weights
    like 1/3 miss q by a rounding error and step to the next session; the tolerance keeps equal
    weights equal to the plain inverted-CDF quantile.
    """
    counts = np.bincount(codes)
    order = np.argsort(times, kind="stable")
    cumulative = np.cumsum(1.0 / counts[codes[order]])
    cumulative /= cumulative[-1]
    idx = np.searchsorted(cumulative, np.asarray(qs) - 1e-9, side="left")
    return times[order][np.minimum(idx, times.size - 1)]


def _balanced_reference_ci(times: np.ndarray, codes: np.ndarray) -> tuple[int, int]:
    """Percentile interval from resampling whole managers, since a manager's sessions move together."""
    rng = np.random.default_rng(0)
    n_managers = int(codes.max()) + 1
    members = [np.flatnonzero(codes == m) for m in range(n_managers)]
    medians = np.empty(BOOTSTRAP_RESAMPLES)
    for i in range(BOOTSTRAP_RESAMPLES):
        picked = rng.integers(0, n_managers, size=n_managers)
        idx = np.concatenate([members[m] for m in picked])
        new_codes = np.repeat(np.arange(n_managers), [members[m].size for m in picked])
        medians[i] = _balanced_quantiles(times[idx], new_codes, (0.5,))[0]
    low, high = np.quantile(medians, [0.025, 0.975])
    return round(float(low)), round(float(high))
