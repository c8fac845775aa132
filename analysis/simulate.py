"""Synthetic service sessions with known drawdowns, for the detection benchmark and the tests.

A population is a site with teams of managers working through the steps of serving a client on
weekdays. A session time is lognormal around the step's typical time, scaled by the manager's
skill, the day of the week, the team's day (busy days are slow for everyone), the manager's day,
and now and then an interruption that multiplies it several times: heavily right-skewed like
real step times. Normal managers differ from the typical time by at most 8%, less than the 10%
materiality threshold, so any flag on them is false.

Four weeks of baseline propose the bands (`suggest_band`, balanced); the next 90 days are the
history the application dates onsets on, whose last four weeks are the look-back (sessions) and
whose last 14 days are the window. Planted drawdowns begin as real ones do: a third of them weeks
before the look-back (1 to 6 weeks), a third in its first days, a third gradually over one or two
weeks (starting up to 5 weeks before the look-back); all cover the 3 of 4 weeks the persistence
rule asks for. They move the manager's true median to 1.25 - 1.6 x the max band (slow) or 0.5 -
0.75 x the min band (fast), on pairs with at least 30 sessions in the window. One team x step per
planted population has most of its managers slowed at once: a systemic drawdown.

With `case_mix=True` every session also has a segment, "vip" or "regular", and a VIP session
takes 60% longer (VIP_FACTOR). Managers have the same skill as before, but their share of VIP
clients differs: most serve 5-25%, a third 35-70%. The bands are proposed from the pooled mix, so
a manager with many VIP clients has a longer median without working any slower: a flag on them is
false unless something was planted. `Population.strata` holds the segment of every session and
`pairs_like_for_like` builds the pairs compared within segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np

from analysis.bands import Band, suggest_band
from analysis.flags import (
    PairInput,
    PairSessions,
    Thresholds,
    pair_from_sessions,
    pairs_like_for_like,
    with_earlier,
)
from analysis.stats import Window, daily_medians

#: step -> (typical seconds, log-scale spread of sessions, share of client sessions reaching it)
STEPS: dict[str, tuple[float, float, float]] = {
    "identification": (45, 0.50, 1.0),
    "needs": (240, 0.55, 0.95),
    "products": (300, 0.50, 0.9),
    "offer": (420, 0.60, 0.8),
    "contract": (600, 0.45, 0.6),
    "payment": (150, 0.50, 0.6),
    "closing": (90, 0.55, 0.9),
}
WEEKDAY_EFFECT = (1.08, 1.02, 1.0, 0.98, 0.94)  # Monday backlog ... Friday routine
NORMAL_SPREAD = 0.077  # log 1.08: normal managers stay within 8% of the typical time
BASELINE_DAYS = HISTORY_DAYS = 28
WINDOW_DAYS = 14
MIN_PLANTED_SESSIONS = 30
#: Days of daily medians that date an onset (as the application's ONSET_DAYS), ending on `until`.
ONSET_DAYS = 90
#: case_mix: a VIP session takes this many times as long as a regular one.
VIP_FACTOR = 1.6
#: case_mix: share of managers with many VIP clients, and the ranges of the VIP share.
VIP_HEAVY_SHARE = 0.25
VIP_SHARE_USUAL, VIP_SHARE_HEAVY = (0.05, 0.20), (0.50, 0.90)
Onset = Literal["before", "inside", "gradual"]


@dataclass(frozen=True)
class Plant:
    """A drawdown put into the data: the truth the benchmark scores flags against."""

    team: str
    manager: str
    step: str
    kind: Literal["slow", "fast"]
    start: date
    systemic: bool
    onset: Onset = "inside"


@dataclass(frozen=True, eq=False)
class Population:
    window: Window
    bands: dict[str, Band]
    pairs: tuple[PairInput, ...]
    plants: tuple[Plant, ...]
    sessions: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]  # (days, log seconds) per pair
    strata: dict[tuple[str, str, str], np.ndarray] | None = None  # case_mix: the segment of each session

    def pairs_until(self, until: date, thresholds: Thresholds | None = None) -> tuple[PairInput, ...]:
        """The pairs as an analysis on `until` would see them (its window, look-back and onset history)."""
        window = Window(until - timedelta(days=WINDOW_DAYS - 1), until)
        return _pairs(self.sessions, self.bands, window, thresholds or Thresholds())

    def pairs_like_for_like(self, thresholds: Thresholds | None = None) -> tuple[PairInput, ...]:
        """The pairs compared within segments (`pairs_like_for_like`), as the application builds them
        for a site that declares session attributes."""
        if self.strata is None:
            raise ValueError("the population has no segments: simulate it with case_mix=True")
        return _pairs(self.sessions, self.bands, self.window, thresholds or Thresholds(), self.strata)


def simulate(
    seed: int,
    *,
    plant: bool = True,
    teams: int = 6,
    slow_share: float = 0.05,
    fast_share: float = 0.03,
    until: date = date(2025, 3, 28),
    thresholds: Thresholds | None = None,
    case_mix: bool = False,
) -> Population:
    """One synthetic site; with `plant=False` nothing is planted (a null population); with
    `case_mix`, managers of the same skill serve different shares of slower VIP clients.

    `pairs` are built without strata (as for a site that declares no attributes)."""
    rng = np.random.default_rng(seed)
    first = until - timedelta(days=BASELINE_DAYS + ONSET_DAYS - 1)
    all_days = np.array([first + timedelta(days=i) for i in range(BASELINE_DAYS + ONSET_DAYS)], dtype="datetime64[D]")
    weekdays = all_days[np.array([d.weekday() < 5 for d in all_days.astype(object)])]
    history_start = np.datetime64(until - timedelta(days=HISTORY_DAYS - 1), "D")
    baseline_end = np.datetime64(until - timedelta(days=ONSET_DAYS - 1), "D")
    window = Window(until - timedelta(days=WINDOW_DAYS - 1), until)

    # sessions[(team, manager, step)] = (days, log seconds without drawdown), true median seconds
    sessions: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}
    strata: dict[tuple[str, str, str], np.ndarray] = {}
    true_median: dict[tuple[str, str, str], float] = {}
    for t in range(teams):
        team = f"team-{t + 1}"
        team_effect = rng.normal(0, 0.02)
        team_day = rng.normal(0, 0.05, size=weekdays.size)
        for m in range(int(rng.integers(5, 10))):
            manager = f"{team}/manager-{m + 1}"
            skill, rate = rng.normal(0, 0.04), rng.uniform(1.5, 4.5)
            manager_day = rng.normal(0, 0.04, size=weekdays.size)
            # drawn after the others, so a population without case mix is the same as before
            vip_share = 0.0
            if case_mix:
                heavy = rng.random() < VIP_HEAVY_SHARE
                vip_share = float(rng.uniform(*(VIP_SHARE_HEAVY if heavy else VIP_SHARE_USUAL)))
            for step, (seconds, sigma, reach) in STEPS.items():
                offset = float(np.clip(team_effect + skill + rng.normal(0, 0.02), -NORMAL_SPREAD, NORMAL_SPREAD))
                counts = rng.poisson(rate * reach, size=weekdays.size)
                day_idx = np.repeat(np.arange(weekdays.size), counts)
                weekday = np.array([WEEKDAY_EFFECT[d.weekday()] for d in weekdays[day_idx].astype(object)])
                log_s = (np.log(seconds) + offset + np.log(weekday) + team_day[day_idx] + manager_day[day_idx]
                         + rng.normal(0, sigma, size=day_idx.size))  # fmt: skip
                interrupted = rng.random(day_idx.size) < 0.015
                log_s[interrupted] += np.log(rng.uniform(3, 8, size=int(interrupted.sum())))
                if case_mix:
                    vip = rng.random(day_idx.size) < vip_share
                    log_s[vip] += np.log(VIP_FACTOR)
                    strata[(team, manager, step)] = np.where(vip, "vip", "regular").astype(object)
                sessions[(team, manager, step)] = (weekdays[day_idx], log_s)
                true_median[(team, manager, step)] = seconds * float(np.exp(offset))

    bands = {}
    for step in STEPS:
        times, who = [], []
        for (_, manager, s), (days, log_s) in sessions.items():
            if s == step:
                baseline = days < baseline_end
                times.append(np.exp(log_s[baseline]) * 1000)
                who.extend([manager] * int(baseline.sum()))
        bands[step] = suggest_band(np.concatenate(times), managers=np.array(who)).band

    plants = _plant(rng, sessions, true_median, bands, window, history_start, slow_share, fast_share) if plant else []
    pairs = _pairs(sessions, bands, window, thresholds or Thresholds())
    return Population(window=window, bands=bands, pairs=pairs, plants=tuple(plants), sessions=sessions,
                      strata=strata if case_mix else None)


def _plant(
    rng: np.random.Generator,
    sessions: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]],
    true_median: dict[tuple[str, str, str], float],
    bands: dict[str, Band],
    window: Window,
    history_start: np.datetime64,
    slow_share: float,
    fast_share: float,
) -> list[Plant]:
    since = np.datetime64(window.since, "D")
    window_n = {key: int(np.sum(days >= since)) for key, (days, _) in sessions.items()}
    eligible = [key for key, n in window_n.items() if n >= MIN_PLANTED_SESSIONS]
    plants: list[Plant] = []

    def slow_down(key: tuple[str, str, str], kind: Literal["slow", "fast"], systemic: bool) -> None:
        days, log_s = sessions[key]
        band = bands[key[2]]
        target = band.max_ms * rng.uniform(1.25, 1.6) if kind == "slow" else band.min_ms * rng.uniform(0.5, 0.75)
        onset: Onset = ("before", "inside", "gradual")[len(plants) % 3]
        ramp = 0
        if onset == "before":
            start = history_start - np.timedelta64(int(rng.integers(7, 43)), "D")
        elif onset == "inside":
            start = history_start + np.timedelta64(int(rng.integers(0, 4)), "D")
        else:
            ramp = int(rng.integers(7, 15))
            start = history_start - np.timedelta64(int(rng.integers(0, 36)), "D")
        elapsed = (days - start).astype(int)
        share = np.clip((elapsed + 1) / (ramp + 1), 0.0, 1.0) if ramp else (elapsed >= 0).astype(float)
        shifted = log_s.copy()
        shifted += share * np.log(target / 1000 / true_median[key])
        sessions[key] = (days, shifted)
        plants.append(Plant(key[0], key[1], key[2], kind, _date(start), systemic, onset))

    # the systemic case: a team x step where at least half of the managers with enough data can be slowed
    by_step: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for key in sessions:
        if window_n[key] >= 20:
            by_step.setdefault((key[0], key[2]), []).append(key)
    candidates = sorted(
        k for k, keys in by_step.items()
        if len(keys) >= 3 and sum(window_n[x] >= MIN_PLANTED_SESSIONS for x in keys) >= 0.5 * len(keys)
    )  # fmt: skip
    taken: set[tuple[str, str]] = set()
    if candidates:
        chosen = candidates[int(rng.integers(len(candidates)))]
        taken.add(chosen)
        for key in by_step[chosen]:
            if window_n[key] >= MIN_PLANTED_SESSIONS:
                slow_down(key, "slow", True)

    rest = [key for key in eligible if (key[0], key[2]) not in taken]
    order = rng.permutation(len(rest))
    n_slow, n_fast = round(slow_share * len(window_n)), round(fast_share * len(window_n))
    for i, idx in enumerate(order[: n_slow + n_fast]):
        slow_down(rest[idx], "slow" if i < n_slow else "fast", False)
    return plants


def _pairs(
    sessions: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]],
    bands: dict[str, Band],
    window: Window,
    thresholds: Thresholds,
    strata: dict[tuple[str, str, str], np.ndarray] | None = None,
) -> tuple[PairInput, ...]:
    """As the application builds them: the look-back's sessions, and daily medians of the 90 days;
    with `strata`, compared like for like (the earlier daily medians raw, as storage keeps them)."""
    until = np.datetime64(window.until, "D")
    lookback = until - np.timedelta64(HISTORY_DAYS - 1, "D")
    onset_since = until - np.timedelta64(ONSET_DAYS - 1, "D")
    pairs = []
    like: list[PairSessions] = []
    earlier_of = []
    for key, (days, log_s) in sessions.items():
        team, manager, step = key
        times = np.round(np.exp(log_s) * 1000)
        keep = (days >= lookback) & (days <= until)
        earlier = (days >= onset_since) & (days < lookback)
        if strata is not None:
            order = np.lexsort((times[keep], days[keep]))
            like.append(PairSessions(team, manager, step, bands[step], times[keep][order], days[keep][order],
                                     strata[key][keep][order]))
            earlier_of.append(daily_medians(times[earlier], days[earlier]))
            continue
        pairs.append(pair_from_sessions(
            team=team, manager=manager, step=step, band=bands[step], durations_ms=times[keep], days=days[keep],
            window=window, thresholds=thresholds, earlier=daily_medians(times[earlier], days[earlier]),
        ))  # fmt: skip
    if strata is not None:
        pairs = [with_earlier(p, *e) for p, e in zip(pairs_like_for_like(like, window, thresholds), earlier_of,
                                                      strict=True)]
    return tuple(pairs)


def _date(day: np.datetime64) -> date:
    return date.fromisoformat(str(day.astype("datetime64[D]")))
