"""Drawdown flags: which manager x step pairs are slow or fast, which steps are systemic, and the
lifecycle of a flag. Pure rules over plain inputs; docs/analysis.md gives the reasons.

A run takes every manager x step pair of one site and window at once, because the
Benjamini-Hochberg correction is over all the peer tests of the run:

    result = assess(pairs, Thresholds(), window)
    result.drawdowns  # flags, most costly first
    result.assessments  # every pair, flagged or not, with its reasons
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Literal

import numpy as np
from scipy import special

from analysis.bands import Band
from analysis.stats import (
    Direction,
    DriftMethod,
    StepSummary,
    Window,
    bh_qvalues,
    daily_medians,
    drift_onset,
    ewma_alarm_now,
    minutes_above_reference_per_week,
    order_by_group_then_value,
    slower_than_peers_p,
    summarize,
    weekly_medians,
)
from analysis.strata import (
    MIN_STRATUM_SESSIONS,
    CaseMix,
    StratifiedRanks,
    TeamStrata,
    case_mix,
)

Status = Literal["ok", "watch", "slow", "fast", "insufficient"]
Kind = Literal["slow", "fast", "systemic"]


@dataclass(frozen=True)
class Thresholds:
    """The settings of the rules; each default is argued in docs/analysis.md."""

    min_sessions: int = 20
    min_peer_sessions: int = 20
    fdr: float = 0.05
    material: float = 0.10
    persistent_periods: int = 3
    persistence_window: int = 4
    min_sessions_per_period: int = 5
    systemic_share: float = 0.40
    systemic_min_managers: int = 2
    drift_method: DriftMethod = "ewma"
    ewma_lambda: float = 0.2
    ewma_limit: float = 3.0
    resolve_after_periods: int = 2
    watch_horizon_weeks: float = 2.0

    def __post_init__(self) -> None:
        checks = {
            "min_sessions": self.min_sessions >= 1, "min_peer_sessions": self.min_peer_sessions >= 1,
            "fdr": 0 < self.fdr < 1, "material": 0 <= self.material < 1,
            "persistent_periods": 0 <= self.persistent_periods <= self.persistence_window,
            "persistence_window": self.persistence_window >= 1,
            "min_sessions_per_period": self.min_sessions_per_period >= 1,
            "systemic_share": 0 < self.systemic_share <= 1, "systemic_min_managers": self.systemic_min_managers >= 1,
            "ewma_lambda": 0 < self.ewma_lambda <= 1, "ewma_limit": self.ewma_limit > 0,
            "resolve_after_periods": self.resolve_after_periods >= 1,
            "watch_horizon_weeks": self.watch_horizon_weeks >= 0,
        }  # fmt: skip
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"threshold {name} is out of range (got {getattr(self, name)!r})")


@dataclass(frozen=True, eq=False)
class PairInput:
    """One manager on one step: the window's sessions and the history for persistence.

    `durations_ms` are the sessions in the window. `daily_*` cover the persistence lookback (the
    window or longer) and `weekly_medians_ms` the last `persistence_window` weekly periods, oldest
    first, None for a period with too few sessions. `onset_days` / `onset_medians_ms`, when given,
    are the daily medians of a longer history (up to 90 days) that dates a drawdown's start;
    without them the start is dated on `daily_*`. `pair_from_sessions` builds all of it from
    per-session rows. The peers of a pair are the other pairs of the run with the same team and
    step, so pass every pair, including those with few sessions.

    `strata`, when the site declares session attributes: the stratum of each window session as an
    integer code, comparable within the team and step (aligned with `durations_ms`, which are then
    mix-adjusted times); the peer test is then van Elteren's, within strata. `case_mix` records
    the adjustment. `pairs_like_for_like` builds both.
    """

    team: str
    manager: str
    step: str
    band: Band
    durations_ms: np.ndarray
    daily_days: np.ndarray
    daily_medians_ms: np.ndarray
    weekly_medians_ms: tuple[float | None, ...]
    onset_days: np.ndarray | None = None
    onset_medians_ms: np.ndarray | None = None
    strata: np.ndarray | None = None
    case_mix: CaseMix | None = None
    #: With strata: the window sessions as measured, which the peer test ranks within their strata.
    peer_ms: np.ndarray | None = None


@dataclass(frozen=True)
class Assessment:
    """The verdict on one pair, flagged or not; `reasons` say why in words.

    `watch`: not a drawdown (yet), but drifting toward the max band: shown apart from drawdowns,
    never counted as time lost. `start_at_least`: the data begins inside the drawdown, which
    began on `start_date` or earlier.
    """

    team: str
    manager: str
    step: str
    status: Status
    band: Band
    summary: StepSummary | None
    p_value: float | None
    q_value: float | None
    periods_in_drawdown: int
    start_date: date | None
    reasons: tuple[str, ...]
    start_at_least: bool = False
    #: How the mix of clients was accounted for (None when the site declares no attributes, or
    #: the team's sessions on the step are all of one stratum).
    case_mix: CaseMix | None = None

    @property
    def n(self) -> int:
        return 0 if self.summary is None else self.summary.n

    @property
    def minutes_above_reference_per_week(self) -> float | None:
        """(median - reference) x sessions a week, whatever the verdict; None without sessions."""
        return None if self.summary is None else self.summary.minutes_above_reference_per_week

    @property
    def minutes_lost_per_week(self) -> float | None:
        """Time lost (docs/analysis.md): the minutes above the reference of a slow pair, 0 for every
        other verdict, None without sessions. A pair on watch or ok above the reference loses nothing yet."""
        above = self.minutes_above_reference_per_week
        return None if above is None else above if self.status == "slow" else 0.0


@dataclass(frozen=True)
class Drawdown:
    """A flag. `manager` is None for a systemic flag, whose slow managers are in `managers`.

    `minutes_lost_per_week` is time lost (docs/analysis.md): a slow flag's pair's, the sum over a
    systemic flag's slow managers (so the time lost of all drawdowns is that of all slow pairs),
    0 for a fast flag. `impact_minutes_per_week` ranks flags (severity 1 is the most costly): the
    time lost for slow and systemic flags, and for fast ones the minutes per week under the
    reference, i.e. the work that may be skipped (never called time lost).
    """

    kind: Kind
    team: str
    step: str
    manager: str | None
    managers: tuple[str, ...]
    window: Window
    n: int
    median_ms: float
    band: Band
    q_value: float | None
    start_date: date | None
    periods_in_drawdown: int
    minutes_lost_per_week: float
    impact_minutes_per_week: float
    severity: int
    reasons: tuple[str, ...]
    start_at_least: bool = False


@dataclass(frozen=True)
class RunResult:
    window: Window
    assessments: tuple[Assessment, ...]
    drawdowns: tuple[Drawdown, ...]

    @property
    def watches(self) -> tuple[Assessment, ...]:
        """The pairs on watch: drifting toward the max band, not drawdowns."""
        return tuple(a for a in self.assessments if a.status == "watch")


def pair_from_sessions(*, team: str, manager: str, step: str, band: Band, durations_ms: np.ndarray,
                       days: np.ndarray | Sequence[date], window: Window,
                       thresholds: Thresholds | None = None,
                       earlier: tuple[np.ndarray, np.ndarray] | None = None,
                       ordered: bool = False) -> PairInput:  # fmt: skip
    """A PairInput from per-session rows covering the persistence lookback (e.g. the last 28 days).

    `earlier`: (days, daily medians) of the days before the first of `days` (e.g. the 90 days
    before the window's end, from the daily pre-aggregate); the start of a drawdown is dated on
    them and the sessions' own daily medians together. Days on or after the sessions' first day
    are left out of it (the sessions' own medians are exact). `ordered`: the caller knows the
    sessions are by day, then time, with finite times (storage's order), which is then not
    checked again (three checks a pair, 0.1 s of a run over 1,600 pairs).
    """
    t = thresholds or Thresholds()
    times = np.asarray(durations_ms, dtype=float)
    day_values = np.asarray(days, dtype="datetime64[D]")
    since, until = np.datetime64(window.since, "D"), np.datetime64(window.until, "D")
    mine: slice | np.ndarray
    history: slice | np.ndarray
    if ordered or np.all(day_values[1:] >= day_values[:-1]):  # days ascending, as storage returns them: slices
        first = int(np.searchsorted(day_values, since, side="left"))
        last = int(np.searchsorted(day_values, until, side="right"))
        mine, history = slice(first, last), slice(0, last)
    else:
        mine = (day_values >= since) & (day_values <= until)
        history = day_values <= until
    daily_days, daily = daily_medians(times[history], day_values[history], ordered=ordered)
    weekly = weekly_medians(
        times[history], day_values[history], window.until,
        periods=t.persistence_window, min_sessions=t.min_sessions_per_period, ordered=ordered,
    )  # fmt: skip
    built = PairInput(team, manager, step, band, times[mine], daily_days, daily, weekly)
    return built if earlier is None else with_earlier(built, *earlier)


@dataclass(frozen=True, eq=False)
class PairSessions:
    """One manager on one step with the stratum of each session: what `pairs_like_for_like` takes.

    `durations_ms`, `days` and `strata` cover the persistence look-back, ordered as for
    `pair_from_sessions`. `strata` are the stratum keys (analysis/strata.py) or, with
    `stratum_keys`, integer places in it (the same `stratum_keys` for every pair of a team and
    step: a reader that numbers the strata once spares sorting strings). `stratum_bands` are the
    step's bands of their own for some strata, by key.
    """

    team: str
    manager: str
    step: str
    band: Band
    durations_ms: np.ndarray
    days: np.ndarray
    strata: np.ndarray
    stratum_bands: dict[str, Band] | None = None
    stratum_keys: np.ndarray | None = None


def pairs_like_for_like(sessions: Sequence[PairSessions], window: Window, thresholds: Thresholds | None = None,
                        *, min_stratum_sessions: int = MIN_STRATUM_SESSIONS) -> list[PairInput]:  # fmt: skip
    """PairInputs that compare like with like (analysis/strata.py): per pair, each stratum's factor
    from the window sessions of the rest of its team on the step; the pair's times divided by their
    stratum's factor (its median, weekly medians and daily medians then compare with the band as if
    it served the team's mix); the window sessions as measured and their strata (integer codes) for
    the van Elteren test; and the CaseMix record, with the stratum keys.

    A team and step whose window sessions are all of one stratum, with no band of a stratum, are
    built as `pair_from_sessions` builds them: nothing to adjust, the Mann-Whitney test as before.
    """
    t = thresholds or Thresholds()
    since, until = np.datetime64(window.since, "D"), np.datetime64(window.until, "D")
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(sessions):
        groups[(s.team, s.step)].append(i)
    built: list[PairInput | None] = [None] * len(sessions)
    for members in groups.values():
        first = sessions[members[0]]
        codes_of, keys = _stratum_codes([sessions[i] for i in members])
        days_of = [np.asarray(sessions[i].days, dtype="datetime64[D]") for i in members]
        window_of = [(d >= since) & (d <= until) for d in days_of]
        team_codes = np.concatenate([c[w] for c, w in zip(codes_of, window_of, strict=True)])
        team_times = np.concatenate([np.asarray(sessions[i].durations_ms, dtype=float)[w]
                                     for i, w in zip(members, window_of, strict=True)])
        bands_of = first.stratum_bands or {}
        team_counts = np.bincount(team_codes, minlength=keys.size)
        if np.count_nonzero(team_counts) <= 1 and not bands_of:
            for i in members:
                s = sessions[i]
                built[i] = pair_from_sessions(team=s.team, manager=s.manager, step=s.step, band=s.band,
                                              durations_ms=s.durations_ms, days=s.days, window=window, thresholds=t)
            continue
        own_bands = {k: bands_of[key] for k, key in enumerate(keys.tolist()) if key in bands_of}
        owner = np.repeat(np.arange(len(members)), [int(w.sum()) for w in window_of])
        team = TeamStrata(team_times, team_codes, owner, keys.size, keys.tolist())
        for k, i in enumerate(members):
            s = sessions[i]
            codes, days = codes_of[k], days_of[k]
            # the factors from the rest of the team: a slow manager who serves most of a kind of
            # client would otherwise make that kind look slow and be excused by it
            factors = team.factors_without(k, first.band, own_bands, min_stratum_sessions)
            raw = np.asarray(s.durations_ms, dtype=float)
            adjusted = raw / factors[codes]
            if adjusted.size > 1 and not bool(np.all((days[1:] > days[:-1]) | ((days[1:] == days[:-1])
                                                                                & (adjusted[1:] >= adjusted[:-1])))):
                order = order_by_group_then_value(days, adjusted)  # by day, then time, as storage orders raw ones
                raw, adjusted, days, codes = raw[order], adjusted[order], days[order], codes[order]
            pair = pair_from_sessions(team=s.team, manager=s.manager, step=s.step, band=s.band,
                                      durations_ms=adjusted, days=days, window=window, thresholds=t, ordered=True)
            mine = (days >= since) & (days <= until)
            own_counts = np.bincount(codes[mine], minlength=keys.size)
            mix = case_mix(raw[mine], adjusted[mine], keys.tolist(), own_counts, team_counts - own_counts,
                           factors, s.band.reference_ms, window.days) if mine.any() else None
            built[i] = replace(pair, strata=codes[mine], case_mix=mix, peer_ms=raw[mine])
    return [p for p in built if p is not None]


def _stratum_codes(sessions: Sequence[PairSessions]) -> tuple[list[np.ndarray], np.ndarray]:
    """Each pair's strata as integer places in one array of keys, shared by the pairs."""
    keys = sessions[0].stratum_keys
    if keys is not None and all(s.stratum_keys is keys for s in sessions):
        return [np.asarray(s.strata, dtype=np.intp) for s in sessions], np.asarray(keys, dtype=object)
    labels = [np.asarray(s.strata if s.stratum_keys is None else np.asarray(s.stratum_keys, dtype=object)[s.strata],
                         dtype=object) for s in sessions]
    found, inverse = np.unique(np.concatenate(labels), return_inverse=True)
    ends = np.cumsum([x.size for x in labels])
    return [inverse[end - x.size:end] for x, end in zip(labels, ends, strict=True)], found.astype(object)


def with_earlier(pair: PairInput, days: np.ndarray | Sequence[date], medians_ms: np.ndarray | Sequence[float]
                 ) -> PairInput:  # fmt: skip
    """The pair with daily medians of the days before its own (up to 90 days) to date an onset on.

    Days on or after the pair's first day with sessions are left out (its own medians are exact);
    medians that do not line up with their days are ignored. A pair compared like for like has
    mix-adjusted medians of its own, and the earlier (raw) ones are scaled by its window's adjusted
    over raw median, so that the change of scale is not taken for the start of a drawdown.
    """
    before_days = np.asarray(days, dtype="datetime64[D]")
    before = np.asarray(medians_ms, dtype=float)
    if before_days.shape != before.shape or before.ndim != 1 or not before.size:
        return pair
    if pair.case_mix is not None and pair.case_mix.median_ms > 0:
        before = before * (pair.case_mix.adjusted_median_ms / pair.case_mix.median_ms)
    if pair.daily_days.size:
        keep = before_days < pair.daily_days[0]
        before_days, before = before_days[keep], before[keep]
    return replace(pair, onset_days=np.concatenate([before_days, pair.daily_days]),
                   onset_medians_ms=np.concatenate([before, pair.daily_medians_ms]))


def date_onsets(result: RunResult, pairs: Sequence[PairInput], thresholds: Thresholds) -> RunResult:
    """The run with its drawdowns dated (again) on their pairs' longest history (`with_earlier`).

    For a run that reads the longer history only for the pairs it found in drawdown: the
    assessments keep their verdicts, the slow and fast ones get their start (and reason) again,
    and the flags are made again from them.
    """
    if len(pairs) != len(result.assessments):
        raise ValueError(f"one pair per assessment is needed (got {len(pairs)} for {len(result.assessments)})")
    assessments = list(result.assessments)
    for i, (pair, a) in enumerate(zip(pairs, assessments, strict=True)):
        if a.status in ("slow", "fast"):
            start, at_least, reason = _onset(pair, a.status, thresholds)  # type: ignore[arg-type]
            assessments[i] = replace(a, start_date=start, start_at_least=at_least, reasons=(*a.reasons[:-1], reason))
    drawdowns = _rank(_flags(pairs, assessments, thresholds, result.window))
    return RunResult(window=result.window, assessments=tuple(assessments), drawdowns=drawdowns)


_NOT_DATED = "start not dated: daily medians show no clear change"


def _onset(pair: PairInput, direction: Direction, t: Thresholds) -> tuple[date | None, bool, str]:
    """(start, at least, the reason that says it), dated on the longest history the pair has."""
    history_days, history = pair.daily_days, pair.daily_medians_ms
    if pair.onset_days is not None and pair.onset_medians_ms is not None:
        history_days, history = pair.onset_days, pair.onset_medians_ms
    onset = drift_onset(
        history_days, history, pair.band.reference_ms, direction=direction,
        method=t.drift_method, ewma_lambda=t.ewma_lambda, ewma_limit=t.ewma_limit,
    )  # fmt: skip
    if onset is None:
        return None, False, _NOT_DATED
    return onset.day, onset.at_least, f"{'at least since' if onset.at_least else 'began on'} {onset.day.isoformat()}"


def assess(pairs: Sequence[PairInput], thresholds: Thresholds, window: Window, *,
           date_starts: bool = True) -> RunResult:  # fmt: skip
    """Assess every pair of a run, correct the peer tests together, and raise the flags.

    `date_starts=False` leaves the drawdowns undated, for a caller that dates them with
    `date_onsets` once it has read their longer history (dating costs a millisecond a pair).
    """
    summaries = [summarize(p.durations_ms, p.band, window.days) if p.durations_ms.size else None for p in pairs]
    p_values = _peer_p_values(pairs, summaries, thresholds)
    tested_idx = [i for i, p in enumerate(p_values) if p is not None]
    q_all = bh_qvalues([p_values[i] for i in tested_idx])
    q_values: list[float | None] = [None] * len(pairs)
    for i, q in zip(tested_idx, q_all, strict=True):
        q_values[i] = float(q)

    assessments = [
        _assess_pair(pair, summary, p, q, thresholds, date_starts)
        for pair, summary, p, q in zip(pairs, summaries, p_values, q_values, strict=True)
    ]
    drawdowns = _rank(_flags(pairs, assessments, thresholds, window))
    return RunResult(window=window, assessments=tuple(assessments), drawdowns=drawdowns)


def _peer_p_values(
    pairs: Sequence[PairInput], summaries: list[StepSummary | None], t: Thresholds
) -> list[float | None]:
    """For each pair with enough sessions, the p-value of 'slower than the team's other managers on the step'.

    The peers are the window sessions of the other managers of the same team and step. Managers
    with enough data whose median is outside the band are left out: a peer who may be skipping
    work would make everyone else look slow, and a slow one would hide a second. The comparison
    is with the team's normal work.

    The sessions of a team's normal managers are ranked once per team and step: a manager's U
    statistic against the others is the sum of their own ranks in that pool, so 1,600 tests cost
    one sort per team and step instead of one sort of the whole team per test.
    """
    normal: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (pair, summary) in enumerate(zip(pairs, summaries, strict=True)):
        if summary is None:
            continue
        outside = summary.median_ms < pair.band.min_ms or summary.median_ms > pair.band.max_ms
        if not (summary.n >= t.min_sessions and outside):
            normal[(pair.team, pair.step)].append(i)
    pools = {key: _StratifiedPool(pairs, members) if any(pairs[j].strata is not None for j in members)
             else _RankedPool(pairs, members) for key, members in normal.items()}
    result: list[float | None] = []
    for i, (pair, summary) in enumerate(zip(pairs, summaries, strict=True)):
        pool = pools.get((pair.team, pair.step))
        if summary is None or summary.n < t.min_sessions or pool is None:
            result.append(None)
            continue
        if isinstance(pool, _StratifiedPool):
            result.append(pool.p_value(i, _peer_times(pair), t.min_peer_sessions, _strata_of(pair)))
        else:
            result.append(pool.p_value(i, pair.durations_ms, t.min_peer_sessions))
    return result


class _RankedPool:
    """The sessions of one team's normal managers on one step, ranked once (average ranks for ties)."""

    def __init__(self, pairs: Sequence[PairInput], members: list[int]):
        self.times = np.concatenate([pairs[j].durations_ms for j in members]).astype(float)
        ends = np.cumsum([pairs[j].durations_ms.size for j in members])
        # each member's sessions are one slice of the pool
        self.span = {j: (int(end) - pairs[j].durations_ms.size, int(end)) for j, end in zip(members, ends, strict=True)}
        order = np.argsort(self.times, kind="quicksort")
        ordered = self.times[order]
        first = np.concatenate(([True], ordered[1:] != ordered[:-1]))
        bounds = np.concatenate((np.nonzero(first)[0], [ordered.size]))
        dense = first.cumsum() - 1
        average = 0.5 * (bounds[dense] + bounds[dense + 1] + 1)  # 1-based average rank of each sorted value
        self.ranks = np.empty(ordered.size)
        self.ranks[order] = average
        ties = np.diff(bounds).astype(float)
        self.tie_term = float((ties**3 - ties).sum())

    def p_value(self, index: int, own: np.ndarray, min_peers: int) -> float | None:
        if index not in self.span:
            # a manager left out of the pool (median outside the band) against the whole pool
            return slower_than_peers_p(own, self.times) if self.times.size >= min_peers else None
        start, end = self.span[index]
        n1 = own.size
        n2 = self.times.size - n1
        if n2 < min_peers:
            return None
        if min(n1, n2) <= 8:  # small samples: scipy's exact method, as slower_than_peers_p does
            return slower_than_peers_p(own, np.concatenate((self.times[:start], self.times[end:])))
        n = n1 + n2
        sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - self.tie_term / (n * (n - 1))))
        if sigma == 0:
            return 1.0  # every session took the same time: nothing to rank
        u = self.ranks[start:end].sum() - n1 * (n1 + 1) / 2
        return float(np.clip(special.ndtr(-(u - n1 * n2 / 2 - 0.5) / sigma), 0.0, 1.0))


class _StratifiedPool:
    """The sessions of one team's normal managers on one step, ranked within their strata once: a
    manager's van Elteren statistic is read from their own slice (analysis/strata.py). A session
    of a pair without strata counts in the stratum ""."""

    def __init__(self, pairs: Sequence[PairInput], members: list[int]):
        self.times = np.concatenate([_peer_times(pairs[j]) for j in members]).astype(float)
        labels = np.concatenate([_strata_of(pairs[j]) for j in members])
        self.keys, codes = np.unique(labels, return_inverse=True)
        ends = np.cumsum([pairs[j].durations_ms.size for j in members])
        self.span = {j: (int(end) - pairs[j].durations_ms.size, int(end)) for j, end in zip(members, ends, strict=True)}
        self.ranked = StratifiedRanks(self.times, codes, self.keys.size)

    def p_value(self, index: int, own: np.ndarray, min_peers: int, own_strata: np.ndarray) -> float | None:
        if index not in self.span:
            # a manager left out of the pool (median outside the band) against the whole pool
            at = np.searchsorted(self.keys, own_strata).clip(max=max(self.keys.size - 1, 0))
            codes = np.where(self.keys[at] == own_strata, at, -1) if self.keys.size else np.full(own.size, -1)
            shared = self.ranked.sizes[np.unique(codes[codes >= 0])].sum()
            return self.ranked.p_greater_than_all(own, codes) if shared >= min_peers else None
        start, end = self.span[index]
        if self.ranked.peers_in_shared_strata(start, end) < min_peers:
            return None
        return self.ranked.p_greater(start, end)


def _peer_times(pair: PairInput) -> np.ndarray:
    return pair.durations_ms if pair.peer_ms is None else pair.peer_ms


def _strata_of(pair: PairInput) -> np.ndarray:
    if pair.strata is None:
        return np.full(pair.durations_ms.size, -1, dtype=np.intp)
    return np.asarray(pair.strata)


def _assess_pair(pair: PairInput, summary: StepSummary | None, p: float | None, q: float | None,
                 t: Thresholds, date_starts: bool = True) -> Assessment:  # fmt: skip
    band = pair.band

    def verdict(status: Status, reasons: list[str], periods: int = 0, start: date | None = None,
                at_least: bool = False) -> Assessment:  # fmt: skip
        return Assessment(pair.team, pair.manager, pair.step, status, band, summary, p, q, periods, start,
                          tuple(reasons), at_least, pair.case_mix)  # fmt: skip

    if summary is None or summary.n < t.min_sessions:
        n = 0 if summary is None else summary.n
        return verdict("insufficient", [f"{n} sessions in the window, fewer than the {t.min_sessions} needed"])

    median = summary.median_ms
    reasons: list[str] = []
    direction: Direction | None = None
    if median > band.max_ms:
        direction = "slow"
        reasons.append(f"median {_s(median)} is above the max band {_s(band.max_ms)}")
    elif q is not None and q <= t.fdr and median >= (1 + t.material) * band.reference_ms:
        direction = "slow"
        above = median / band.reference_ms - 1
        reasons.append(f"slower than the team's other managers (q = {q:.3g}) and {above:.0%} above the reference")
    elif median < band.min_ms:
        direction = "fast"
        reasons.append(f"median {_s(median)} is below the min band {_s(band.min_ms)}: possible skipped work")
    if direction is None:
        if q is not None and q <= t.fdr:
            return _watch_or_ok(pair, t, verdict,
                                ["slower than the peers, but the median is within the materiality threshold"])
        return _watch_or_ok(pair, t, verdict, ["within the band"])

    periods = _drawdown_periods(pair.weekly_medians_ms, band, direction, t)
    of = t.persistence_window
    if periods < t.persistent_periods:
        not_yet = [*reasons, f"but only in {periods} of the last {of} weeks: not persistent"]
        return _watch_or_ok(pair, t, verdict, not_yet, periods) if direction == "slow" \
            else verdict("ok", not_yet, periods)  # fmt: skip
    start, at_least, said = _onset(pair, direction, t) if date_starts else (None, False, _NOT_DATED)
    reasons += [f"in {periods} of the last {of} weeks", said]
    return verdict(direction, reasons, periods, start, at_least)


def _watch_or_ok(pair: PairInput, t: Thresholds, verdict: Callable[..., Assessment], reasons: list[str],
                 periods: int = 0) -> Assessment:  # fmt: skip
    """`watch` for a pair drifting toward the max band, else `ok`.

    Either the trend of the weekly medians (least squares on their logs), continued, crosses the
    max band within `watch_horizon_weeks`, or the EWMA chart of the daily medians is in alarm on
    the last day while the drawdown is not (yet) persistent.
    """
    band = pair.band
    weeks = [(i, m) for i, m in enumerate(pair.weekly_medians_ms) if m is not None and m > 0]
    latest_material = bool(weeks) and weeks[-1][1] >= (1 + t.material) * band.reference_ms
    if len(weeks) >= 3 and weeks[-1][0] == len(pair.weekly_medians_ms) - 1 and latest_material:
        at = np.array([i for i, _ in weeks], dtype=float)
        logs = np.log([m for _, m in weeks])
        slope = float(((at - at.mean()) * (logs - logs.mean())).sum() / ((at - at.mean()) ** 2).sum())
        ahead = float(np.exp(logs.mean() + slope * (at[-1] + t.watch_horizon_weeks - at.mean())))
        if slope > 0 and ahead > band.max_ms:
            return verdict("watch", [*reasons, f"weekly medians rising: at this pace above the max band "
                                               f"{_s(band.max_ms)} within {t.watch_horizon_weeks:g} weeks"], periods)
    # the chart against the materiality line: a manager steadily a little above the reference is not drifting
    recent, line = pair.daily_medians_ms, (1 + t.material) * band.reference_ms
    if recent.size and ewma_alarm_now(recent, line, ewma_lambda=t.ewma_lambda, ewma_limit=t.ewma_limit):
        return verdict("watch", [*reasons, "daily medians drifting up (control chart), not yet persistent"], periods)
    return verdict("ok", reasons, periods)


def _drawdown_periods(weekly: tuple[float | None, ...], band: Band, direction: Direction, t: Thresholds) -> int:
    """Weeks whose median is materially off the reference in the flag's direction."""
    recent = weekly[-t.persistence_window :]
    if direction == "slow":
        return sum(1 for m in recent if m is not None and m >= (1 + t.material) * band.reference_ms)
    return sum(1 for m in recent if m is not None and m <= (1 - t.material) * band.reference_ms)


def _flags(pairs: Sequence[PairInput], assessments: list[Assessment], t: Thresholds, window: Window) -> list[Drawdown]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, a in enumerate(assessments):
        if a.status != "insufficient":
            groups[(a.team, a.step)].append(i)
    systemic: set[tuple[str, str]] = set()
    flags: list[Drawdown] = []
    for (team, step), members in groups.items():
        slow = [i for i in members if assessments[i].status == "slow"]
        if len(slow) >= t.systemic_min_managers and len(slow) >= t.systemic_share * len(members):
            systemic.add((team, step))
            flags.append(_systemic_flag(pairs, assessments, members, slow, window))

    for a in assessments:
        if a.status not in ("slow", "fast") or (a.status == "slow" and (a.team, a.step) in systemic):
            continue
        assert a.summary is not None
        lost = a.minutes_lost_per_week or 0.0
        under = minutes_above_reference_per_week(a.band.reference_ms, a.summary.median_ms, a.summary.n, window.days)
        flags.append(Drawdown(
            kind=a.status, team=a.team, step=a.step, manager=a.manager, managers=(a.manager,), window=window,
            n=a.summary.n, median_ms=a.summary.median_ms, band=a.band, q_value=a.q_value, start_date=a.start_date,
            periods_in_drawdown=a.periods_in_drawdown, minutes_lost_per_week=lost,
            impact_minutes_per_week=lost if a.status == "slow" else under, severity=0, reasons=a.reasons,
            start_at_least=a.start_at_least,
        ))  # fmt: skip
    return flags


def _systemic_flag(pairs: Sequence[PairInput], assessments: list[Assessment], members: list[int], slow: list[int],
                   window: Window) -> Drawdown:  # fmt: skip
    """One step-level flag for the team: every member's sessions (the team's median), the time lost of
    its slow managers only (an ok member above the reference loses no time)."""
    first = assessments[slow[0]]
    times = np.concatenate([pairs[i].durations_ms for i in members])
    lost = float(sum(assessments[i].minutes_lost_per_week or 0.0 for i in slow))
    starts = sorted((a.start_date, not a.start_at_least) for a in (assessments[i] for i in slow)
                    if a.start_date is not None)  # the earliest; on a tie, "at least" wins
    names = tuple(sorted(assessments[i].manager for i in slow))
    reason = (f"{len(slow)} of {len(members)} managers with enough data are slow on this step: "
              "check the step, its CRM page or its band")  # fmt: skip
    return Drawdown(
        kind="systemic", team=first.team, step=first.step, manager=None, managers=names, window=window,
        n=int(times.size), median_ms=float(np.median(times)), band=first.band, q_value=None,
        start_date=starts[0][0] if starts else None, start_at_least=bool(starts) and not starts[0][1],
        periods_in_drawdown=min(assessments[i].periods_in_drawdown for i in slow),
        minutes_lost_per_week=lost, impact_minutes_per_week=lost, severity=0, reasons=(reason,),
    )  # fmt: skip


def _rank(flags: list[Drawdown]) -> tuple[Drawdown, ...]:
    kind_order = {"systemic": 0, "slow": 1, "fast": 2}
    flags.sort(key=lambda f: (-f.impact_minutes_per_week, kind_order[f.kind], f.team, f.step, f.manager or ""))
    return tuple(replace(f, severity=rank) for rank, f in enumerate(flags, start=1))


def _s(ms: float) -> str:
    return f"{ms / 1000:.0f} s"


# --- Lifecycle -------------------------------------------------------------------------------


class FlagStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    COACHING = "coaching"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


#: Where a flag may go from each status. Back to OPEN from a closed status is a reopen: a recurrence.
_S = FlagStatus
ALLOWED: dict[FlagStatus, frozenset[FlagStatus]] = {
    _S.OPEN: frozenset({_S.ACKNOWLEDGED, _S.COACHING, _S.RESOLVED, _S.DISMISSED}),
    _S.ACKNOWLEDGED: frozenset({_S.COACHING, _S.RESOLVED, _S.DISMISSED}),
    _S.COACHING: frozenset({_S.RESOLVED, _S.DISMISSED}),
    _S.RESOLVED: frozenset({_S.OPEN}),
    _S.DISMISSED: frozenset({_S.OPEN}),
}
ACTIVE = frozenset({FlagStatus.OPEN, FlagStatus.ACKNOWLEDGED, FlagStatus.COACHING})
#: A dismissal or a reopen must say why: the audit log is read by people who were not there.
REASON_REQUIRED = frozenset({FlagStatus.DISMISSED, FlagStatus.OPEN})


class InvalidTransition(ValueError):
    """A flag cannot move from its status to the one asked for (or needs a reason)."""


def transition(current: FlagStatus | str, target: FlagStatus | str, reason: str | None = None) -> FlagStatus:
    """The new status if the move is allowed; raises InvalidTransition with the allowed moves otherwise."""
    now, to = _status(current), _status(target)
    if to not in ALLOWED[now]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[now]))
        raise InvalidTransition(f"a flag cannot go from {now.value} to {to.value} (from {now.value}: {allowed})")
    if to in REASON_REQUIRED and not (reason and reason.strip()):
        verb = "dismiss" if to is FlagStatus.DISMISSED else "reopen"
        raise InvalidTransition(f"a reason is required to {verb} a flag")
    return to


@dataclass(frozen=True)
class AutoUpdate:
    """What a new analysis period does to a stored flag; `note` goes to the audit log when it changed."""

    status: FlagStatus
    periods_without_condition: int
    changed: bool = False
    note: str | None = None


def auto_update(current: FlagStatus | str, condition_holds_now: bool, periods_without_condition: int, *,
                resolve_after: int = 2) -> AutoUpdate:  # fmt: skip
    """Resolve a flag whose condition has not held for `resolve_after` periods; reopen a recurrence.

    `periods_without_condition` is the stored count of consecutive earlier periods without the
    condition; the returned one is the count to store. A resolved flag reopens as soon as the
    condition holds again (resolving claims the problem is gone). A dismissed one reopens only if
    the condition went away for `resolve_after` periods and came back: the dismissal covered the
    condition as it was, a new episode deserves a new look.
    """
    now = _status(current)
    if periods_without_condition < 0:
        raise ValueError(f"periods_without_condition must be 0 or more (got {periods_without_condition})")
    without = 0 if condition_holds_now else periods_without_condition + 1
    if now in ACTIVE and without >= resolve_after:
        note = f"condition absent for {without} periods: resolved automatically"
        return AutoUpdate(transition(now, FlagStatus.RESOLVED, note), without, True, note)
    recurred = now is FlagStatus.RESOLVED or periods_without_condition >= resolve_after
    if now in (FlagStatus.RESOLVED, FlagStatus.DISMISSED) and condition_holds_now and recurred:
        note = "condition recurred: reopened"
        return AutoUpdate(transition(now, FlagStatus.OPEN, note), without, True, note)
    return AutoUpdate(now, without)


def _status(value: FlagStatus | str) -> FlagStatus:
    try:
        return FlagStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in FlagStatus)
        raise InvalidTransition(f"unknown flag status {value!r} (known: {known})") from None
