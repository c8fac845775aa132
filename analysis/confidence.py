"""How sure the analysis is about one drawdown flag: high, medium or low, with the one reason that
decided it. Pure: the flag's stored figures in, a frozen answer out (no database, no web).

The rule, on the figures the flag already carries:

- **band rule**: the median is outside the band (slow: above the maximum; fast: below the minimum).
  A systemic flag counts as holding it (each of its slow managers passed the rules on their own).
- **margin**: how far the median is past the limit it crossed, as a share of that limit
  (median / max - 1 for slow, 1 - median / min for fast); 0 when only the peer rule holds.
- **weeks**: weeks in drawdown out of the persistence window (by default 4).

Then, checked in this order:

1. **low** when the window has fewer than twice the minimum sessions (under 40 by default): the
   median of so few sessions moves a lot from week to week. Reason `few_sessions`.
2. **low** when only the peer rule holds (the median is inside the band) and the chance of such a
   difference from the teammates by luck is over 1 in 100 (q-value above 0.01, or not tested).
   Reason `peer_weak`.
3. **high** when the band rule holds, the median is at least 10% past the limit, and every week of
   the persistence window was in drawdown. Reason `clear`. A systemic flag (its weeks are the
   fewest of its slow managers') is high when every week was in drawdown: reason `team_every_week`.
4. **medium** otherwise, saying what kept it from high: `peer_only` (inside the band, but slower
   than the teammates with a chance by luck of 1 in 100 or less), `near_limit` (less than 10% past
   the limit), or `not_every_week` (in drawdown in only some weeks of the window).

A flag inside the band is never high: the band is what the business agreed a step should take, so
a drawdown the band does not see is worth a look, not a certainty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Level = Literal["high", "medium", "low"]
Kind = Literal["slow", "fast", "systemic"]

#: How far past the limit a median must be for `high` (10%).
CLEAR_MARGIN = 0.10
#: The largest q-value of a peer-only flag that is not `low` (a chance by luck of 1 in 100).
PEER_Q = 0.01
#: Sessions needed for more than `low`, as a multiple of the analysis' minimum.
SESSIONS_FACTOR = 2


@dataclass(frozen=True)
class Confidence:
    """The level, the code of the reason that decided it, and the figures that reason quotes."""

    level: Level
    why: str
    figures: dict[str, float | int | None] = field(default_factory=dict)


def margin_past_limit(kind: Kind, median_ms: float, min_ms: float, max_ms: float) -> float:
    """The share by which the median is past the limit it crossed (0 when it is inside the band)."""
    if kind == "fast":
        return max(0.0, 1 - median_ms / min_ms) if min_ms > 0 else 0.0
    return max(0.0, median_ms / max_ms - 1) if max_ms > 0 else 0.0


def chance_by_luck(q_value: float | None) -> tuple[str, int] | None:
    """A q-value as odds a person reads: ("under", 1000) for q < 0.001, ("under", 100), ("under", 20),
    else ("about", N) for 1 in N; None when there was no peer comparison."""
    if q_value is None or q_value != q_value or q_value < 0:
        return None
    for bound in (1000, 100, 20):
        if q_value < 1 / bound:
            return ("under", bound)
    return ("about", max(1, round(1 / q_value))) if q_value > 0 else ("under", 1000)


def confidence(*, kind: Kind, n: int, median_ms: float, min_ms: float, max_ms: float, q_value: float | None,
               weeks_in_drawdown: int, window_weeks: int, min_sessions: int) -> Confidence:
    """The flag's confidence by the rule of this module's docstring."""
    band_rule = kind == "systemic" or (median_ms < min_ms if kind == "fast" else median_ms > max_ms)
    margin = margin_past_limit(kind, median_ms, min_ms, max_ms) if kind != "systemic" else 0.0
    facts: dict[str, float | int | None] = {"n": n, "margin": round(margin, 4), "weeks": weeks_in_drawdown,
                                            "of": window_weeks, "q_value": q_value}
    if n < SESSIONS_FACTOR * min_sessions:
        return Confidence("low", "few_sessions", facts)
    if not band_rule and (q_value is None or q_value > PEER_Q):
        return Confidence("low", "peer_weak", facts)
    every_week = weeks_in_drawdown >= window_weeks
    if kind == "systemic":
        return Confidence("high", "team_every_week", facts) if every_week \
            else Confidence("medium", "not_every_week", facts)
    if band_rule and margin >= CLEAR_MARGIN and every_week:
        return Confidence("high", "clear", facts)
    if not band_rule:
        return Confidence("medium", "peer_only", facts)
    if margin < CLEAR_MARGIN:
        return Confidence("medium", "near_limit", facts)
    return Confidence("medium", "not_every_week", facts)
