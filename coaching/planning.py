"""Before assigning: how large an improvement the evaluation can confirm, and how long it takes.

The verdict (coaching/evaluation.py) is a one-sided z-test of the difference in differences of the
trimmed mean of log time: the manager's change minus the peers' precision-weighted change, its
variance Yuen's from the sessions times the design effect of sessions that share a day. Its
standard error (evaluation.standard_error) therefore follows from how many sessions each person
has in each window and how spread their times are, both known before the coaching from the
recent history on the step:

    manager = volume(times_ms, days_seen=28)                # sessions a day, spread of one session
    peers = [volume(t, days_seen=28) for t in peers_times]
    plan = plan_windows(manager, peers, pre_days=14, post_days=14, target_change=0.25)
    plan.min_detectable_change   # 0.21: a 21% faster time is confirmed 8 times in 10
    plan.days_to_verdict         # 12: windows of 14 days before and 12 after suffice for 25%

The power of a true improvement r (a time r shorter) is P(z > z_alpha) with z ~ N(-log(1 - r) / se, 1);
the minimum detectable improvement at `power` is 1 - exp(-(z_alpha + z_power) se). Sessions are
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
from coaching.evaluation import Criteria, _design_effect, _Window, _yuen

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


def standard_error(manager: Volume, peers: Sequence[Volume], *, pre_days: int, post_days: int,
                   design_effect: float = 1.0, criteria: Criteria | None = None) -> float | None:
    """The verdict's standard error for these windows (evaluation.standard_error, the evaluation's own
    formula), or None when the verdict would be `insufficient_data`: the manager short of
    `min_sessions` in a window, or no peer expected to have `min_peer_sessions` in both."""
    c = criteria or Criteria()
    if min(manager.sessions(pre_days), manager.sessions(post_days)) < c.min_sessions:
        return None
    counted = [evaluation.Volume(p.sessions(pre_days), p.sessions(post_days), p.spread) for p in peers
               if min(p.sessions(pre_days), p.sessions(post_days)) >= c.min_peer_sessions]
    if not counted:
        return None
    own = evaluation.Volume(manager.sessions(pre_days), manager.sessions(post_days), manager.spread)
    return evaluation.standard_error(own, counted, design_effect=design_effect, trim=c.trim)


def power(change: float, se: float | None, alpha: float | None = None) -> float:
    """The chance the verdict says `improved` when the time is truly `change` shorter (0.25 = 25%
    faster), relative to the peers. 0 when the verdict would be `insufficient_data`."""
    if se is None:
        return 0.0
    a = Criteria().alpha if alpha is None else alpha
    if not 0 <= change < 1:
        raise ValueError(f"an improvement is a share from 0 to 1 (got {change})")
    if se <= 0:
        return 1.0 if change > 0 else a
    return float(stats.norm.sf(stats.norm.ppf(1 - a) - (-math.log1p(-change)) / se))


def min_detectable_change(se: float | None, alpha: float | None = None, at_power: float = POWER) -> float | None:
    """The smallest improvement (a share: 0.2 = 20% faster) confirmed with `at_power` at one-sided `alpha`."""
    if se is None or not 0 < at_power < 1:
        return None
    a = Criteria().alpha if alpha is None else alpha
    return 1.0 - math.exp(-(stats.norm.ppf(1 - a) + stats.norm.ppf(at_power)) * se)


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
                 target_change: float | None = None, design_effect: float = 1.0,
                 criteria: Criteria | None = None, at_power: float = POWER) -> Plan:
    """The plan for these windows, and the days a window after the coaching needs for the target.

    `days_to_verdict` is the shortest d such that windows of max(pre_days, d) days before and d days
    after confirm `target_change` with `at_power`: the window before grows with the one after, since
    a long window after set against a short one before gains little. None when not within half a year.
    """
    c = criteria or Criteria()
    deff = max(design_effect, 1.0)
    se = standard_error(manager, peers, pre_days=pre_days, post_days=post_days, design_effect=deff, criteria=c)
    enough = [p for p in peers if min(p.sessions(pre_days), p.sessions(post_days)) >= c.min_peer_sessions]
    reason = None
    if min(manager.sessions(pre_days), manager.sessions(post_days)) < c.min_sessions:
        reason = "few_sessions"
    elif se is None:
        reason = "no_peers"
    days = at_target = confirmable = None
    available = availability(manager.sessions(post_days), c)
    if target_change is not None and target_change > 0:
        target_change = min(target_change, 0.95)
        at_target = available * power(target_change, se, c.alpha)
        confirmable = at_target >= at_power
        days = days_to_verdict(manager, peers, target_change, pre_days=pre_days, design_effect=deff,
                               criteria=c, at_power=at_power)
    mde = min_detectable_change(se, c.alpha, at_power / available) if available > at_power else None
    return Plan(pre_days, post_days, manager.sessions(pre_days), manager.sessions(post_days), len(enough), deff,
                available, se, mde, target_change, at_target, days, confirmable, reason)


def days_to_verdict(manager: Volume, peers: Sequence[Volume], change: float, *, pre_days: int,
                    design_effect: float = 1.0, criteria: Criteria | None = None, at_power: float = POWER,
                    longest: int = LONGEST_PLAN_DAYS) -> int | None:
    """The shortest window after the coaching (with max(pre_days, d) before) that confirms `change`
    with `at_power`; None when even `longest` days do not. Power grows with d, so a bisection finds it."""
    c = criteria or Criteria()

    def enough(d: int) -> bool:
        se = standard_error(manager, peers, pre_days=max(pre_days, d), post_days=d, design_effect=design_effect,
                            criteria=c)
        return availability(manager.sessions(d), c) * power(change, se, c.alpha) >= at_power

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
    wins = [_Window(np.asarray(t, dtype=float), np.asarray(d).astype("datetime64[D]").astype(np.int64)
                    if np.issubdtype(np.asarray(d).dtype, np.datetime64) else np.asarray(d, dtype=np.int64))
            for t, d in windows if np.size(t) >= 2]
    return _design_effect(wins, cut) if wins else 1.0
