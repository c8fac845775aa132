"""Before assigning: how large an improvement the evaluation can confirm, and how long it takes.

The verdict (coaching/evaluation.py) is a one-sided t-test of the difference in differences of the
trimmed mean of log time: the manager's change minus the peers' precision-weighted change, its
variance Yuen's from the sessions times the design effect of sessions that share a day, plus what
the team's shared days leave where the manager's days differ from the peers'. Its standard error
(evaluation.standard_error) therefore follows from how many sessions each person has in each
window, how spread their times are and how much a day moves everyone, all known before the
coaching from the recent history on the step:

    manager = volume(times_ms, days_seen=28)                # sessions a day, spread of one session
    peers = [volume(t, days_seen=28) for t in peers_times]
    history = [(times_ms, days), ...]                       # the manager's and each peer's
    plan = plan_windows(manager, peers, pre_days=14, post_days=14, target_change=0.25,
                        days=day_effects(history, days_seen=28))
    plan.min_detectable_change   # 0.21: a 21% faster time is confirmed 8 times in 10
    plan.days_to_verdict         # 12: windows of 14 days before and 12 after suffice for 25%

The power of a true improvement r (a time r shorter) is Phi(-log(1 - r) / se - t_alpha), t_alpha the
verdict's critical value at its expected degrees of freedom; the minimum detectable improvement at
`power` is 1 - exp(-(t_alpha + z_power) se). Sessions are
assumed to come at the rate and spread of the history in both windows, their number in the window
after as a Poisson count: the chance it reaches the verdict's minimum multiplies every power.
Pure: no database, no web.
docs/coaching.md ("Planning") gives the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from coaching import evaluation
from coaching.evaluation import (
    LOWEST_DESIGN_EFFECT,
    Criteria,
    _day_design_effect,
    _design_effect,
    _shared_day_variance,
    _Window,
    _yuen,
)

POWER = 0.80  # the chance of `improved` a plan promises for the improvement it names
LONGEST_PLAN_DAYS = 182  # beyond half a year a window says nothing about this coaching: "not within"


@dataclass(frozen=True)
class Volume:
    """One person's sessions on the step as the history shows them."""

    per_day: float  # sessions per calendar day
    spread: float  # winsorised standard deviation of log time (the spread Yuen's variance uses)
    sessions_seen: int  # in the history the figures come from

    def sessions(self, days: int) -> float:
        """Expected sessions in a window of `days` calendar days."""
        return self.per_day * days


def volume(times_ms: np.ndarray | Sequence[float], days_seen: int, trim: float | None = None) -> Volume:
    """Rate and spread of one person's sessions over `days_seen` calendar days of history."""
    if days_seen < 1:
        raise ValueError("the history needs at least one day")
    times = np.asarray(times_ms, dtype=float).ravel()
    cut = Criteria().trim if trim is None else trim
    spread = 0.0
    if times.size >= 2:
        _, _, winsorised = _yuen(times, cut)
        spread = float(np.std(winsorised, ddof=1))
    return Volume(times.size / days_seen, spread, int(times.size))


def window_variance(v: Volume, days: int, trim: float | None = None) -> float | None:
    """Yuen's variance of the trimmed mean of log time over a window of `days` (evaluation.window_variance
    at this person's rate and spread), None when the window would keep fewer than 2 sessions."""
    return evaluation.window_variance(v.sessions(days), v.spread, Criteria().trim if trim is None else trim)


def working_days(calendar_days: int) -> float:
    """The days with sessions in a window of `calendar_days`: five in seven."""
    return max(1.0, calendar_days * 5 / 7)


@dataclass(frozen=True)
class DayEffects:
    """What days do to the sessions, as the history shows them (day_effects)."""

    design_effect: float = 1.0  # of a person's own days (evaluation._design_effect)
    design_effect_variance: float = 0.0  # the variance of that estimate over the history
    shared_variance: float = 0.0  # of what a day does to everyone (evaluation._shared_day_variance)
    days_seen: int = 28  # the history's length: the verdict's estimate, over longer windows, is less noisy

    def design_effect_variance_over(self, days: int) -> float:
        """The variance of the verdict's design effect over windows of `days` in all: the history's,
        scaled by the person-days each pools (the noise of a pooled ratio goes as 1 / its days)."""
        return self.design_effect_variance * self.days_seen / max(days, 1)


def _test(manager: Volume, peers: Sequence[Volume], *, pre_days: int, post_days: int, days: DayEffects,
          criteria: Criteria) -> evaluation.PlannedTest | None:
    c = criteria
    if min(manager.sessions(pre_days), manager.sessions(post_days)) < c.min_sessions:
        return None
    counted = [evaluation.Volume(p.sessions(pre_days), p.sessions(post_days), p.spread) for p in peers
               if min(p.sessions(pre_days), p.sessions(post_days)) >= c.min_peer_sessions]
    if not counted:
        return None
    own = evaluation.Volume(manager.sessions(pre_days), manager.sessions(post_days), manager.spread)
    return evaluation.planned_test(own, counted, design_effect=max(days.design_effect, LOWEST_DESIGN_EFFECT),
                                   design_effect_variance=days.design_effect_variance_over(pre_days + post_days),
                                   trim=c.trim, shared_day_variance=days.shared_variance,
                                   working_days=(working_days(pre_days), working_days(post_days)))


def standard_error(manager: Volume, peers: Sequence[Volume], *, pre_days: int, post_days: int,
                   design_effect: float = 1.0, shared_day_variance: float = 0.0,
                   criteria: Criteria | None = None) -> float | None:
    """The verdict's standard error for these windows (evaluation.planned_test, the evaluation's own
    formula), or None when the verdict would be `insufficient_data`: the manager short of
    `min_sessions` in a window, or no peer expected to have `min_peer_sessions` in both."""
    test = _test(manager, peers, pre_days=pre_days, post_days=post_days,
                 days=DayEffects(design_effect=design_effect, shared_variance=shared_day_variance),
                 criteria=criteria or Criteria())
    return None if test is None else test.standard_error


def _critical(alpha: float | None, df: float) -> float:
    a = Criteria().alpha if alpha is None else alpha
    return float(stats.t.ppf(1 - a, df)) if math.isfinite(df) else float(stats.norm.ppf(1 - a))


def power(change: float, se: float | None, alpha: float | None = None, df: float = math.inf) -> float:
    """The chance the verdict says `improved` when the time is truly `change` shorter (0.25 = 25%
    faster), relative to the peers, its t having `df` degrees of freedom (the normal's by default).
    0 when the verdict would be `insufficient_data`."""
    if se is None:
        return 0.0
    a = Criteria().alpha if alpha is None else alpha
    if not 0 <= change < 1:
        raise ValueError(f"an improvement is a share from 0 to 1 (got {change})")
    if se <= 0:
        return 1.0 if change > 0 else a
    return float(stats.norm.sf(_critical(a, df) - (-math.log1p(-change)) / se))


def min_detectable_change(se: float | None, alpha: float | None = None, at_power: float = POWER,
                          df: float = math.inf) -> float | None:
    """The smallest improvement (a share: 0.2 = 20% faster) confirmed with `at_power` at one-sided
    `alpha`, the verdict's t having `df` degrees of freedom."""
    if se is None or not 0 < at_power < 1:
        return None
    return 1.0 - math.exp(-(_critical(alpha, df) + stats.norm.ppf(at_power)) * se)


def availability(expected_sessions: float, criteria: Criteria | None = None) -> float:
    """The chance that a window expected to hold `expected_sessions` holds the verdict's `min_sessions`
    (sessions taken as Poisson): below them the verdict is `insufficient_data`, whatever the change.
    Only the window after the coaching is uncertain when assigning; the baseline is past by then."""
    c = criteria or Criteria()
    return float(stats.poisson.sf(c.min_sessions - 1, expected_sessions)) if expected_sessions > 0 else 0.0


@dataclass(frozen=True)
class Plan:
    """What the evaluation can say for an assignment with these windows. Changes are shares: 0.25 = 25% faster."""

    pre_days: int
    post_days: int
    sessions_before: float  # the manager's expected sessions in the window before
    sessions_after: float  # and in the window after the coaching
    peers: int  # peers expected to have enough sessions in both windows
    design_effect: float
    degrees_of_freedom: float | None  # the verdict's t's, expected; None: no standard error, or a normal (no spread)
    availability: float  # chance the window after holds min_sessions (Poisson); every power below includes it
    standard_error: float | None  # of the relative effect in log time; None: the verdict would lack data
    min_detectable_change: float | None  # confirmed with POWER at these windows
    target_change: float | None  # what the director's target asks (1 - target / current median)
    power_at_target: float | None
    days_to_verdict: int | None  # shortest window after (and before, when longer) confirming the target with POWER
    confirmable: bool | None  # the target confirmed with POWER within the chosen windows
    reason: str | None  # why there is no figure: few_sessions, no_peers (None when there is one)

    @property
    def suggested_pre_days(self) -> int | None:
        """The window before that goes with days_to_verdict."""
        return None if self.days_to_verdict is None else max(self.pre_days, self.days_to_verdict)

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "suggested_pre_days": self.suggested_pre_days}


def plan_windows(manager: Volume, peers: Sequence[Volume], *, pre_days: int, post_days: int,
                 target_change: float | None = None, days: DayEffects | None = None,
                 criteria: Criteria | None = None, at_power: float = POWER) -> Plan:
    """The plan for these windows, and the days a window after the coaching needs for the target.

    `days_to_verdict` is the shortest d such that windows of max(pre_days, d) days before and d days
    after confirm `target_change` with `at_power`: the window before grows with the one after, since
    a long window after set against a short one before gains little. None when not within half a year.
    """
    c = criteria or Criteria()
    d = days or DayEffects()
    test = _test(manager, peers, pre_days=pre_days, post_days=post_days, days=d, criteria=c)
    se, df = (None, math.inf) if test is None else (test.standard_error, test.df)
    enough = [p for p in peers if min(p.sessions(pre_days), p.sessions(post_days)) >= c.min_peer_sessions]
    reason = None
    if min(manager.sessions(pre_days), manager.sessions(post_days)) < c.min_sessions:
        reason = "few_sessions"
    elif se is None:
        reason = "no_peers"
    needed = at_target = confirmable = None
    available = availability(manager.sessions(post_days), c)
    if target_change is not None and target_change > 0:
        target_change = min(target_change, 0.95)
        at_target = available * power(target_change, se, c.alpha, df)
        confirmable = at_target >= at_power
        needed = days_to_verdict(manager, peers, target_change, pre_days=pre_days, days=d, criteria=c,
                                 at_power=at_power)
    mde = min_detectable_change(se, c.alpha, at_power / available, df) if available > at_power else None
    return Plan(pre_days, post_days, manager.sessions(pre_days), manager.sessions(post_days), len(enough),
                max(d.design_effect, LOWEST_DESIGN_EFFECT), df if math.isfinite(df) else None, available, se, mde,
                target_change, at_target, needed, confirmable, reason)


def days_to_verdict(manager: Volume, peers: Sequence[Volume], change: float, *, pre_days: int,
                    days: DayEffects | None = None, criteria: Criteria | None = None,
                    at_power: float = POWER, longest: int = LONGEST_PLAN_DAYS) -> int | None:
    """The shortest window after the coaching (with max(pre_days, d) before) that confirms `change`
    with `at_power`; None when even `longest` days do not. Power grows with d, so a bisection finds it."""
    c = criteria or Criteria()
    effects = days or DayEffects()

    def enough(d: int) -> bool:
        test = _test(manager, peers, pre_days=max(pre_days, d), post_days=d, days=effects, criteria=c)
        if test is None:
            return False
        return availability(manager.sessions(d), c) * power(change, test.standard_error, c.alpha, test.df) >= at_power

    if not enough(longest):
        return None
    low, high = 1, longest  # enough(high) holds
    while low < high:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle + 1
    return low


def design_effect(windows: Sequence[tuple[np.ndarray, np.ndarray]], trim: float | None = None) -> float:
    """The design effect of sessions that share a day, from the history: (times, day of each) per person,
    pooled as the evaluation pools it over its windows; 1 when the history holds no two days."""
    cut = Criteria().trim if trim is None else trim
    wins = _windows(windows)
    return _design_effect(wins, cut) if wins else 1.0


def day_effects(windows: Sequence[tuple[np.ndarray, np.ndarray]], days_seen: int,
                trim: float | None = None) -> DayEffects:
    """What days do to the sessions, from the history of `days_seen` days: (times, day of each) per
    person, as the evaluation measures it over its windows. The design effect of a person's own days
    and the variance of its estimate (1 and 0 when the history holds no two days), and the variance
    of what a day does to everyone, a Monday or the team's busy day (0 when no two people share a day)."""
    cut = Criteria().trim if trim is None else trim
    wins = _windows(windows)
    if not wins:
        return DayEffects(days_seen=days_seen)
    deff, variance = _day_design_effect(wins, cut)
    return DayEffects(deff, variance, _shared_day_variance(wins, cut), days_seen)


def _windows(windows: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[_Window]:
    return [_Window(np.asarray(t, dtype=float), np.asarray(d).astype("datetime64[D]").astype(np.int64)
                    if np.issubdtype(np.asarray(d).dtype, np.datetime64) else np.asarray(d, dtype=np.int64))
            for t, d in windows if np.size(t) >= 2]
