"""Like for like: comparing a manager with peers within the kinds of client they serve.

A site may declare a few session attributes (segment, channel, ...); a session's stratum is the
tuple of its declared values, encoded as one string (sessions without attributes form the stratum
""). A manager who serves more of a slow segment has a longer median without working any slower,
so the analysis accounts for the mix in two places:

- The peer test is van Elteren's stratified rank-sum test: the manager's sessions are ranked
  against the peers' sessions of the same stratum only, and the strata's rank sums are combined
  with weights 1 / (N_s + 1) (N_s: the sessions of the stratum in the comparison), the locally
  most powerful weights when the shift is the same in every stratum. With one stratum it is the
  Mann-Whitney test without continuity correction.
- The figures compared with the band (median, time above the reference, the weekly medians of
  persistence) are taken on mix-adjusted times: each session's time divided by its stratum's
  factor, how much longer that stratum takes than the step as a whole. The factor is the
  stratum's own band reference over the step's when the stratum has a band, else the median of
  the stratum over the median of the step among the rest of the team's window sessions (the
  manager's own left out: a slow manager who serves most of a kind of client would otherwise
  make that kind look slow and be excused by it), else (fewer than `min_sessions` such sessions
  of the stratum) 1. The test ranks the sessions as measured, within their strata.

`CaseMix` records how the mix was accounted for, for the drawdown page: each stratum's share of
the manager's sessions and of the team's, its factor, and the excess over the reference with and
without adjustment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from analysis.bands import Band
from analysis.stats import _median, minutes_above_reference_per_week, order_by_group_then_value

#: Joins the values of a stratum's attributes in its key; never part of an attribute value (short
#: lowercase keys of letters, digits, _ and -).
SEPARATOR = "|"
#: Below this many team sessions in a stratum its median is too unsteady to adjust by.
MIN_STRATUM_SESSIONS = 20


def stratum_key(attributes: Mapping[str, str], declared: Sequence[str]) -> str:
    """The stratum of one session: its values of the declared attributes, in declared order
    (a missing one as ""); "" for a session with none of them."""
    values = [attributes.get(name, "") for name in declared]
    return SEPARATOR.join(values) if any(values) else ""


def stratum_values(key: str, declared: Sequence[str]) -> dict[str, str]:
    """{attribute: value} of a stratum key, leaving out the attributes it has no value for."""
    if not key:
        return {}
    return {name: value for name, value in zip(declared, key.split(SEPARATOR), strict=False) if value}


@dataclass(frozen=True)
class StratumShare:
    """One stratum of a manager x step comparison."""

    stratum: str
    manager_sessions: int
    manager_share: float
    team_share: float
    factor: float


@dataclass(frozen=True)
class CaseMix:
    """How the mix of clients was accounted for in one manager x step assessment.

    `median_ms` and `minutes_above_reference_per_week` are of the raw times; the adjusted ones are
    what the verdict rests on (the assessment's summary). `strata` in descending order of the
    manager's share.
    """

    strata: tuple[StratumShare, ...]
    median_ms: float
    adjusted_median_ms: float
    minutes_above_reference_per_week: float
    adjusted_minutes_above_reference_per_week: float
    method: str = "van_elteren"

    @property
    def main_difference(self) -> StratumShare | None:
        """The slower kind of client the manager serves more of than the rest of the team, that
        lengthens their median most: the largest (manager share - team share) x log(factor) among
        strata with a factor above 1 and a larger share; None when there is none."""
        best, best_effect = None, 0.0
        for s in self.strata:
            if s.factor <= 1 or s.manager_share <= s.team_share:
                continue
            effect = (s.manager_share - s.team_share) * float(np.log(s.factor))
            if effect > best_effect + 1e-12:
                best, best_effect = s, effect
        return best


def stratum_factors(times_ms: np.ndarray, strata: np.ndarray, band: Band, *,
                    stratum_bands: Mapping[str, Band] | None = None,
                    min_sessions: int = MIN_STRATUM_SESSIONS) -> dict[str, float]:  # fmt: skip
    """How much longer each stratum takes than the step as a whole (see the module's docstring).

    `times_ms`, `strata`: the sessions on the step in the window of the managers compared with.
    """
    times = np.asarray(times_ms, dtype=float)
    labels = np.asarray(strata)
    if times.shape != labels.shape:
        raise ValueError(f"one stratum per session is needed (got {labels.size} for {times.size})")
    factors: dict[str, float] = {}
    if times.size == 0:
        return factors
    overall = float(np.median(times))
    keys = np.unique(labels).tolist()
    for key in keys:
        own = (stratum_bands or {}).get(key)
        if own is not None:
            factors[key] = own.reference_ms / band.reference_ms
            continue
        mine = times[labels == key]
        if mine.size >= min_sessions and overall > 0:
            factors[key] = float(np.median(mine)) / overall
            continue
        factor = 1.0  # too few of this combination: the product of its values' own factors
        for place, value in _values(key):
            sharing = times[np.isin(labels, [k for k in keys if _value_at(k, place) == value])]
            if sharing.size >= min_sessions and overall > 0:
                factor *= float(np.median(sharing)) / overall
        factors[key] = factor
    return factors


def _values(key: str) -> list[tuple[int, str]]:
    """(place, value) of each attribute a stratum key has a value for, when it has more than one:
    a single attribute's stratum is its own value, with nothing finer to fall back on."""
    if not isinstance(key, str):  # strata numbered rather than named: nothing to take apart
        return []
    values = [(place, value) for place, value in enumerate(key.split(SEPARATOR)) if value]
    return values if len(values) > 1 else []


def _value_at(key: str, place: int) -> str:
    parts = key.split(SEPARATOR)
    return parts[place] if place < len(parts) else ""


class TeamStrata:
    """A team's window sessions on a step by stratum code, for the factors of each of its managers
    from the rest of the team (`factors_without`): the same figures as `stratum_factors` over the
    others' sessions, with each median without one manager found by a binary search rather than a
    pass over the team's sessions (a team of 25 on a step: 25 medians per stratum)."""

    def __init__(self, times_ms: np.ndarray, codes: np.ndarray, owners: np.ndarray, n_codes: int,
                 keys: Sequence[str] = ()):
        times, owners, codes = np.asarray(times_ms, dtype=float), np.asarray(owners), np.asarray(codes)
        order = np.argsort(times)  # sorted once: a median without one owner is a lookup
        times, owners, codes = times[order], owners[order], codes[order]
        n_owners = int(owners.max()) + 1 if owners.size else 0
        self.n_codes = n_codes
        self.overall = _SortedWithout(times, owners, n_owners)
        self.by_code = [_SortedWithout(times[m], owners[m], n_owners) for m in (codes == c for c in range(n_codes))]
        # a combination too rare to scale by (VIP by e-mail) takes the product of its values' factors
        # (VIP, e-mail), each from every session with that value: the keys say which codes share one
        key_list = list(keys)
        self.values_of = [_values(key) for key in key_list]
        self.by_value: dict[tuple[int, str], _SortedWithout] = {}
        for code_values in self.values_of:
            for place, value in code_values:
                if (place, value) not in self.by_value:
                    sharing = [c for c, key in enumerate(key_list) if _value_at(key, place) == value]
                    m = np.isin(codes, sharing)
                    self.by_value[(place, value)] = _SortedWithout(times[m], owners[m], n_owners)

    def factors_without(self, owner: int, band: Band, code_bands: Mapping[int, Band], min_sessions: int
                        ) -> np.ndarray:  # fmt: skip
        """Each code's factor from the sessions of every owner but `owner` (1 when too few, or for a
        combination of attributes, the product of its values' factors)."""
        factors = np.ones(self.n_codes)
        overall = self.overall.median_without(owner)
        for code, sessions in enumerate(self.by_code):
            own = code_bands.get(code)
            if own is not None:
                factors[code] = own.reference_ms / band.reference_ms
                continue
            median = sessions.median_without(owner) if sessions.count_without(owner) >= min_sessions else 0.0
            if median and overall:
                factors[code] = median / overall
                continue
            for value in (self.values_of[code] if code < len(self.values_of) else ()):
                sharing = self.by_value[value]
                median = sharing.median_without(owner) if sharing.count_without(owner) >= min_sessions else 0.0
                if median and overall:
                    factors[code] *= median / overall
        return factors  # never 0: a kind of client whose median is 0 ms is not scaled by


class _SortedWithout:
    """Sorted times with the owner of each: the median of the times of every owner but one.

    The j-th time (from 0) not of owner o is at place j + c, c being o's times before it: those of
    o's places p_k (ascending) with p_k - k <= j, since p_k - k other times precede the k-th of o's.
    """

    def __init__(self, times: np.ndarray, owners: np.ndarray, n_owners: int):
        self.times = times
        # each owner's places, ascending (owners as 16-bit numbers when they fit: a radix sort)
        by_owner = np.argsort(owners.astype(np.int16) if n_owners < 1 << 15 else owners, kind="stable")
        counts = np.bincount(owners, minlength=n_owners) if owners.size else np.zeros(n_owners, dtype=np.intp)
        self.starts = np.r_[0, np.cumsum(counts)]
        # p_k - k of each owner's k-th place
        self.before = by_owner - (np.arange(by_owner.size) - self.starts[:-1][owners[by_owner]])

    def count_without(self, owner: int) -> int:
        if owner + 1 >= self.starts.size:
            return int(self.times.size)
        return int(self.times.size - (self.starts[owner + 1] - self.starts[owner]))

    def median_without(self, owner: int) -> float:
        """(0 when there are none)"""
        kept = self.count_without(owner)
        if not kept:
            return 0.0
        if owner + 1 >= self.starts.size:
            mine = self.before[:0]
        else:
            mine = self.before[self.starts[owner]:self.starts[owner + 1]]
        lower, upper = (kept - 1) // 2, kept // 2
        at = np.searchsorted(mine, [lower, upper], side="right")
        return float((self.times[lower + at[0]] + self.times[upper + at[1]]) / 2)


def adjusted_times(times_ms: np.ndarray, strata: np.ndarray, factors: Mapping[str, float]) -> np.ndarray:
    """Each session's time divided by its stratum's factor (1 for a stratum without one)."""
    times = np.asarray(times_ms, dtype=float)
    labels = np.asarray(strata)
    if times.shape != labels.shape:
        raise ValueError(f"one stratum per session is needed (got {labels.size} for {times.size})")
    if times.size == 0:
        return times
    keys, inverse = np.unique(labels, return_inverse=True)
    divisors = np.array([factors.get(k, 1.0) for k in keys.tolist()], dtype=float)
    return times / divisors[inverse]


def van_elteren_greater_p(mine_ms: np.ndarray, mine_strata: np.ndarray, peers_ms: np.ndarray,
                          peers_strata: np.ndarray) -> float | None:  # fmt: skip
    """One-sided p-value of van Elteren's test for 'this manager's times tend to be longer than the
    peers' of the same stratum'; None when no stratum has sessions of both (nothing to compare)."""
    mine, peers = np.asarray(mine_ms, dtype=float), np.asarray(peers_ms, dtype=float)
    if mine.shape != np.shape(mine_strata) or peers.shape != np.shape(peers_strata):
        raise ValueError("one stratum per session is needed")
    keys, codes = np.unique(np.concatenate([np.asarray(mine_strata), np.asarray(peers_strata)]), return_inverse=True)
    pool = StratifiedRanks(np.concatenate([mine, peers]), codes, keys.size)
    return pool.p_greater(0, mine.size)


class StratifiedRanks:
    """Sessions ranked within their strata once (average ranks for ties); then the van Elteren
    statistic of any slice of them against the rest costs one pass over the slice."""

    def __init__(self, times_ms: np.ndarray, codes: np.ndarray, n_strata: int):
        self.times = np.asarray(times_ms, dtype=float)
        self.codes = np.asarray(codes, dtype=np.intp)
        self.n_strata = n_strata
        order = order_by_group_then_value(self.codes, self.times)
        ordered_t, ordered_c = self.times[order], self.codes[order]
        first = np.r_[True, (ordered_t[1:] != ordered_t[:-1]) | (ordered_c[1:] != ordered_c[:-1])]
        bounds = np.r_[np.flatnonzero(first), ordered_t.size]
        dense = first.cumsum() - 1
        self.sizes = np.bincount(self.codes, minlength=n_strata).astype(float)
        stratum_start = np.r_[0, np.cumsum(self.sizes)[:-1]]
        # 1-based average rank within the stratum of each sorted value
        average = 0.5 * (bounds[dense] + bounds[dense + 1] + 1) - stratum_start[ordered_c]
        self.ranks = np.empty(ordered_t.size)
        self.ranks[order] = average
        ties = np.diff(bounds).astype(float)
        self.tie_terms = np.bincount(ordered_c[bounds[:-1]], weights=ties**3 - ties, minlength=n_strata)
        self.ordered = ordered_t  # by stratum, then time: stratum c's are [stratum_start[c], stratum_start[c + 1])
        self.stratum_start = np.r_[stratum_start, ordered_t.size].astype(np.intp)

    def p_greater(self, start: int, end: int) -> float | None:
        """Van Elteren's one-sided p-value for the sessions [start, end) against all the others."""
        codes = self.codes[start:end]
        n1 = np.bincount(codes, minlength=self.n_strata).astype(float)
        rank_sums = np.bincount(codes, weights=self.ranks[start:end], minlength=self.n_strata)
        return _van_elteren_p(n1, self.sizes - n1, rank_sums, self.tie_terms)

    def p_greater_than_all(self, times_ms: np.ndarray, codes: np.ndarray) -> float | None:
        """Van Elteren's one-sided p-value for sessions outside the pool (`codes` its strata's
        numbers; others count in no comparison) against all of it: what van_elteren_greater_p gives
        for them and the pool's sessions, from the pool's sorted times (no sort of the pool again).

        In a stratum, a session's rank among both is the pool's times below it, half of those equal
        to it, and its rank among its own: the own ranks add up to m (m + 1) / 2 whatever the ties.
        The tie term is the pool's, with each value the outside sessions share made larger."""
        times, codes = np.asarray(times_ms, dtype=float), np.asarray(codes, dtype=np.intp)
        n1, n2 = np.zeros(self.n_strata), np.zeros(self.n_strata)
        rank_sums, ties = np.zeros(self.n_strata), self.tie_terms.copy()
        for code in np.unique(codes[(codes >= 0) & (codes < self.n_strata)]).tolist():
            pool = self.ordered[self.stratum_start[code]:self.stratum_start[code + 1]]
            own = times[codes == code]
            below, up_to = np.searchsorted(pool, own, side="left"), np.searchsorted(pool, own, side="right")
            m = own.size
            n1[code], n2[code] = m, pool.size
            rank_sums[code] = float((below + 0.5 * (up_to - below)).sum()) + m * (m + 1) / 2
            values, first, counts = np.unique(own, return_index=True, return_counts=True)
            in_pool = (up_to - below)[first].astype(float)
            both = in_pool + counts
            ties[code] += float((both**3 - both).sum() - (in_pool**3 - in_pool).sum())
        return _van_elteren_p(n1, n2, rank_sums, ties)

    def peers_in_shared_strata(self, start: int, end: int) -> int:
        """The other sessions in the strata the slice has sessions in: the comparison's size."""
        n1 = np.bincount(self.codes[start:end], minlength=self.n_strata)
        return int((self.sizes - n1)[n1 > 0].sum())


def _van_elteren_p(n1: np.ndarray, n2: np.ndarray, rank_sums: np.ndarray, tie_terms: np.ndarray) -> float | None:
    """Van Elteren's one-sided p-value from each stratum's sizes (the tested sessions' and the
    others'), the tested sessions' rank sum among both and the stratum's tie term (sum of t^3 - t)."""
    n = n1 + n2
    informative = (n1 > 0) & (n2 > 0)
    if not informative.any():
        return None
    n1, n2, n, rank_sums = n1[informative], n2[informative], n[informative], rank_sums[informative]
    ties = tie_terms[informative]
    weights = 1.0 / (n + 1)
    deviation = rank_sums - n1 * (n + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    spread = float(np.sqrt((weights**2 * variance).sum()))
    if spread == 0:
        return 1.0  # every session of every compared stratum took the same time
    z = float((weights * deviation).sum()) / spread
    return float(np.clip(special.ndtr(-z), 0.0, 1.0))


def case_mix(times_ms: np.ndarray, adjusted_ms: np.ndarray, keys: Sequence[str], manager_counts: np.ndarray,
             peer_counts: np.ndarray, factors: Sequence[float], reference_ms: float, window_days: int) -> CaseMix:
    """The record of one pair's adjustment: `times_ms` raw and `adjusted_ms` adjusted (the manager's
    window sessions); per stratum (`keys`, in the order of the counts and factors) the manager's
    sessions and the other managers' of the team."""
    mine, peers = np.asarray(manager_counts, dtype=float), np.asarray(peer_counts, dtype=float)
    n = int(mine.sum())
    if n == 0 or np.size(times_ms) != n:
        raise ValueError(f"the manager's counts must add up to their sessions (got {n} for {np.size(times_ms)})")
    peer_total = max(float(peers.sum()), 1.0)
    shares = sorted(
        (StratumShare(key, int(mine[k]), float(mine[k] / n), float(peers[k] / peer_total), float(factors[k]))
         for k, key in enumerate(keys) if mine[k] or peers[k]),
        key=lambda s: (-s.manager_share, -s.team_share, s.stratum),
    )
    median = _median(np.asarray(times_ms, dtype=float))
    adjusted = _median(np.asarray(adjusted_ms, dtype=float))
    return CaseMix(
        strata=tuple(shares), median_ms=median, adjusted_median_ms=adjusted,
        minutes_above_reference_per_week=minutes_above_reference_per_week(median, reference_ms, n, window_days),
        adjusted_minutes_above_reference_per_week=minutes_above_reference_per_week(
            adjusted, reference_ms, n, window_days),
    )  # fmt: skip


def bands_of_strata(keys: Sequence[str], declared: Sequence[str], kind_bands: Mapping[str, Band]) -> dict[str, Band]:
    """Each stratum key's band of its own, from the bands set per kind of client (`kind_bands`:
    "name=value" -> the band in force, e.g. "segment=vip"): a key takes the band of its value of the
    first declared attribute that has one; a key with none is left out (its factor then comes from
    the data). A band of an attribute no longer declared matches nothing."""
    found: dict[str, Band] = {}
    if not kind_bands:
        return found
    for key in keys:
        values = stratum_values(key, declared)
        band = next((kind_bands[f"{name}={values[name]}"] for name in declared
                     if name in values and f"{name}={values[name]}" in kind_bands), None)
        if band is not None:
            found[key] = band
    return found
