"""Where a manager's extra time on a step goes: the excess over the team, in minutes a week, split
into longer visits, more visits a session (coming back to the step) and more idle and hidden time,
in parts that add up to the excess exactly.

A week of one manager's time on a step is

    sessions a week x visits a session x time a visit,   time a visit = active + idle + hidden

and the team's equivalent is the same sessions at the team's visits a session and time a visit, so

    excess = s x (v x t - V x T)

(lower case the manager, upper case the rest of the team). The two-factor product is split the
Shapley way, each factor's change valued at the average of the other factor's two levels:

    v t - V T = (v - V) (t + T) / 2  +  (t - T) (v + V) / 2

which is exact and does not depend on an order (a sequential split would hand the interaction
(v - V)(t - T) to whichever factor comes second). The time a visit is a sum, so its part splits
linearly into active (longer visits), idle and hidden. See docs/analysis.md, "Where the extra time
goes".

Plain numbers in, a frozen dataclass out: no database, no web framework.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MS_PER_MINUTE = 60_000


@dataclass(frozen=True)
class Usage:
    """One manager's (or a group's) use of a step over a window: service sessions that visited it,
    visits, and the visits' summed active, idle and hidden time in milliseconds."""

    sessions: int
    visits: int
    active_ms: float
    idle_ms: float
    hidden_ms: float

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.sessions + other.sessions, self.visits + other.visits, self.active_ms + other.active_ms,
                     self.idle_ms + other.idle_ms, self.hidden_ms + other.hidden_ms)

    @staticmethod
    def pooled(usages: Iterable[Usage]) -> Usage:
        """Several managers as one: their sessions, visits and times summed (a session-weighted team)."""
        total = Usage(0, 0, 0.0, 0.0, 0.0)
        for u in usages:
            total = total + u
        return total


@dataclass(frozen=True)
class Profile:
    """A Usage as rates: visits a session and the average visit's active, idle and hidden time."""

    sessions: int
    visits_per_session: float
    active_ms_per_visit: float
    idle_ms_per_visit: float
    hidden_ms_per_visit: float

    @property
    def ms_per_visit(self) -> float:
        return self.active_ms_per_visit + self.idle_ms_per_visit + self.hidden_ms_per_visit

    @property
    def ms_per_session(self) -> float:
        return self.visits_per_session * self.ms_per_visit


def profile(usage: Usage) -> Profile | None:
    """The rates of a usage; None without a session or a visit (nothing to average)."""
    if usage.sessions <= 0 or usage.visits <= 0:
        return None
    return Profile(usage.sessions, usage.visits / usage.sessions, usage.active_ms / usage.visits,
                   usage.idle_ms / usage.visits, usage.hidden_ms / usage.visits)


@dataclass(frozen=True)
class Decomposition:
    """The excess of `mine` over `team` in minutes a week, and its parts:

    - `longer_visits_minutes`: more active time a visit;
    - `more_visits_minutes`: more visits a session (returns to the step), at the average visit time;
    - `idle_hidden_minutes`: more idle and hidden time a visit (`idle_minutes + hidden_minutes`).

    `longer_visits_minutes + more_visits_minutes + idle_hidden_minutes == total_minutes` up to
    floating point; a part is negative where the manager is below the team on it."""

    sessions_per_week: float
    total_minutes: float
    longer_visits_minutes: float
    more_visits_minutes: float
    idle_hidden_minutes: float
    idle_minutes: float
    hidden_minutes: float
    mine: Profile
    team: Profile

    @property
    def parts(self) -> tuple[float, float, float]:
        """(longer visits, more visits, idle and hidden), the order the page says them in."""
        return (self.longer_visits_minutes, self.more_visits_minutes, self.idle_hidden_minutes)


def decompose(mine: Usage, team: Usage, window_days: int) -> Decomposition | None:
    """The manager's excess over the team per week, split into parts that add up to it.

    `mine` is the manager's (or the slow managers' pooled) usage of the step over a window of
    `window_days` days, `team` the rest of the team's over the same window. None when either has no
    session, or the window no day."""
    if window_days <= 0:
        return None
    m, t = profile(mine), profile(team)
    if m is None or t is None:
        return None
    per_week = mine.sessions * 7 / window_days
    v, big_v = m.visits_per_session, t.visits_per_session
    visits_mean = (v + big_v) / 2
    scale = per_week / MS_PER_MINUTE
    more_visits = (v - big_v) * (m.ms_per_visit + t.ms_per_visit) / 2 * scale
    longer = (m.active_ms_per_visit - t.active_ms_per_visit) * visits_mean * scale
    idle = (m.idle_ms_per_visit - t.idle_ms_per_visit) * visits_mean * scale
    hidden = (m.hidden_ms_per_visit - t.hidden_ms_per_visit) * visits_mean * scale
    total = (m.ms_per_session - t.ms_per_session) * scale
    return Decomposition(per_week, total, longer, more_visits, idle + hidden, idle, hidden, m, t)


def apportion(total: float, parts: Sequence[float], unit: float = 1.0) -> tuple[float, list[float]]:
    """`total` and `parts` rounded to multiples of `unit` so that the rounded parts add up to the
    rounded total (largest remainders): "42 minutes: 25, 12 and 5", never "25, 12 and 6".

    `total` should be the parts' sum; where rounding them one by one would not add up, the parts
    closest to the next multiple take the difference."""
    if not parts:
        return round(total / unit) * unit, []
    target = round(total / unit)
    floors = [math.floor(p / unit) for p in parts]
    left = max(0, min(len(parts), target - sum(floors)))
    by_remainder = sorted(range(len(parts)), key=lambda i: (parts[i] / unit - floors[i]), reverse=True)
    for i in by_remainder[:left]:
        floors[i] += 1
    units = sum(floors)
    return _tidy(units * unit, unit), [_tidy(f * unit, unit) for f in floors]


def _tidy(value: float, unit: float) -> float:
    """A multiple of `unit` without the float noise of the multiplication (0.30000000000000004)."""
    digits = max(0, -math.floor(math.log10(unit))) if unit < 1 else 0
    return round(value, digits) + 0.0  # + 0.0: never -0.0
