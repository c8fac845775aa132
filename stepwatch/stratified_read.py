"""Each session's time on a step with its stratum: what the like-for-like analysis reads.

The read of a 28-day look-back at 10 million visits a quarter is three million sessions. A process
that runs the analysis again and again (the schedule inside `stepwatch serve`) keeps what it read
last, per client, site and metric, and reads again only the days that changed since: a day whose
newest refresh, row count or longest time differs, a day new to the range. A refresh rewrites a
day with a new `computed_at`, and an erasure or a retention drop changes its row count, so a kept
day is always the day as stored. `stepwatch analyze` run once reads everything.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from analysis.strata import SEPARATOR
from kernel import storage


@dataclass(frozen=True)
class StratifiedTimes:
    """storage.PairTimes with the stratum of each session (analysis/strata.py's keys)."""

    manager: str
    step: str
    times_ms: Any  # numpy int64 array
    days: Any  # numpy datetime64[D] array
    codes: Any  # numpy integer array: each session's stratum, a place in `keys`
    keys: Any  # numpy object array of the stratum keys (analysis/strata.py), the same for every pair of a read

    @property
    def strata(self) -> Any:
        return self.keys[self.codes]


def stratum_of_attributes(attributes: str, declared: dict[str, tuple[str, ...]]) -> str:
    """The stratum key (analysis/strata.py) of a session's attributes as session_steps keeps them
    ("channel=phone&segment=vip"): the declared attributes' values in order, a value not declared
    as none; "" when none is left."""
    given = dict(pair.partition("=")[::2] for pair in attributes.split("&") if pair)
    values = [given.get(name, "") if given.get(name, "") in allowed else "" for name, allowed in declared.items()]
    return SEPARATOR.join(values) if any(values) else ""


@dataclass(frozen=True)
class _Layout:
    """How a session's pair, day, time and attributes share one 64-bit number, each with just the
    bits it needs (pair highest, so that one sort puts pairs, days and times in order)."""

    since: date
    pairs: tuple[int, ...]  # each pair's hash, in the order of its number (by manager, then step)
    pair_bits: int
    day_bits: int
    time_bits: int
    code_bits: int

    @property
    def pair_shift(self) -> int:
        return 64 - self.pair_bits

    @property
    def day_shift(self) -> int:
        return self.time_bits + self.code_bits

    def sql(self, day: str, time: str, code: str) -> str:
        """The number in ClickHouse, from a day, a time and the attributes' place in {kinds}."""
        number = ("transform(pair, {pairs:Array(UInt64)}, range(length({pairs:Array(UInt64)})), "
                  "length({pairs:Array(UInt64)}))")  # a pair that arrives during the read: one past the last
        return (f"bitOr(bitOr(bitShiftLeft(toUInt64({number}), {self.pair_shift}), "
                f"bitShiftLeft(toUInt64({day} - {{since:Date}}), {self.day_shift})), "
                f"bitOr(bitShiftLeft(toUInt64({time}), {self.code_bits}), toUInt64({code})))")

    def unpack(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pair number, day offset, time, attributes' place) of each number."""
        pair = values >> np.uint64(self.pair_shift)
        offsets = (values >> np.uint64(self.day_shift)) & np.uint64((1 << self.day_bits) - 1)
        times = (values >> np.uint64(self.code_bits)) & np.uint64((1 << self.time_bits) - 1)
        codes = values & np.uint64((1 << self.code_bits) - 1)
        return pair, offsets, times, codes

    def fields(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(day offset, time, attributes' place) of each number: unpack without the pair."""
        offsets = values >> np.uint64(self.day_shift)
        offsets &= np.uint64((1 << self.day_bits) - 1)
        times = values >> np.uint64(self.code_bits)
        times &= np.uint64((1 << self.time_bits) - 1)
        return offsets, times, values & np.uint64((1 << self.code_bits) - 1)

    def pack(self, pair: np.ndarray, offsets: np.ndarray, times: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return ((pair << np.uint64(self.pair_shift)) | (offsets << np.uint64(self.day_shift))
                | (times << np.uint64(self.code_bits)) | codes)

    def moved_to(self, values: np.ndarray, new: _Layout) -> np.ndarray:
        """Numbers of this layout in `new` (a layout with every pair of this one, from the same or
        an earlier day): the pairs' numbers and the days' offsets only grow, so the order stays."""
        if new == self:
            return values
        if replace(new, since=self.since) == self and new.since >= self.since:  # a later first day only
            return values - np.uint64((new.since - self.since).days << self.day_shift)
        pair, offsets, times, codes = self.unpack(values)
        numbers = {h: i for i, h in enumerate(new.pairs)}
        renumbered = np.array([numbers[h] for h in self.pairs], dtype=np.uint64)
        # never below 0: the days kept are in the new range
        moved = (offsets.astype(np.int64) + (self.since - new.since).days).astype(np.uint64)
        return new.pack(renumbered[pair.astype(np.intp)], moved, times, codes)


@dataclass(frozen=True)
class _Kept:
    """The last read of a site and metric through one client."""

    layout: _Layout
    days: dict[date, tuple[str, int, int]]  # each day's newest refresh, rows and longest time, when read
    names: dict[int, tuple[str, str]]  # each pair's hash: (manager, step)
    kinds: tuple[str, ...]  # the attributes seen, in the order of their places (from 1)
    values: list[np.ndarray]  # per pair (in the layout's order): its sessions with rows on one day, sorted
    keys: list[np.ndarray]  # each of those numbers' session key
    repeated: np.ndarray  # the keys of the sessions with rows on several days (read summed every time), sorted


_kept: weakref.WeakKeyDictionary[Client, dict[tuple[str, str], _Kept]] = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()


def stratified_step_times(client: Client, site: str, since: date, until: date, metric: str,
                          declared: dict[str, tuple[str, ...]]) -> list[StratifiedTimes]:  # fmt: skip
    """What storage.session_step_times reads (each session's time on a step, summed over its rows of
    the range, dated by its first day; pairs by manager and step, sessions by day then time), with
    each session's stratum: its declared attributes' values, in order.

    The attributes are those session_steps keeps with each session (its start event's, as
    name=value pairs joined by &, written by storage.refresh_session_steps). A value the process no
    longer declares counts as no value; a session with none is in the stratum "".

    Read as one 64-bit number per session (_Layout), packed by ClickHouse, with the session's key;
    the sessions with rows on several days are summed by ClickHouse, with the attributes of their
    first day's row (the start event is joined to the rows of its day and the next); one sort of the numbers puts
    pairs, days and times in order. Against a join of the start events by session id on every read,
    this halves the read; keeping the last read (the module's docstring) makes a run that follows
    another read only the days that changed (docs/performance.md). A site, range or session too
    large to pack is read as four columns and sorted by numpy.
    """
    column = storage.METRIC_COLUMNS[metric]
    rng = "site = {site:String} AND day >= {since:Date} AND day < {until:Date}"
    parameters: dict[str, Any] = {"site": site, "since": since, "until": until}
    # each day of the range as stored: its newest refresh, its rows (every refresh's) and longest time
    stored = {day: (at, int(rows), int(longest)) for day, at, rows, longest in client.query(
        f"SELECT day, toString(max(computed_at)), count(), max({column}) FROM session_steps WHERE {rng} GROUP BY day",
        parameters=parameters).result_rows}
    with _kept_lock:  # taken out while in use (a read that fails leaves nothing half moved behind)
        kept = _kept.get(client, {}).pop((site, column), None)
    if not stored:
        return []
    changed = sorted(day for day, state in stored.items() if kept is None or kept.days.get(day) != state)
    if kept is not None and 2 * len(changed) > len(stored):
        kept, changed = None, sorted(stored)  # most of it changed: read it all, as the first time
    parameters["changed"] = changed
    in_changed = "site = {site:String} AND day IN {changed:Array(Date)}"
    # the changed days' pairs and distinct attributes (more may arrive during the read: their rows
    # are left out)
    names = dict(kept.names) if kept is not None else {}
    kinds = list(kept.kinds) if kept is not None else []
    for pair, manager, step, attributes in client.query(
            "SELECT pair, toString(manager), toString(step), groupUniqArray(toString(attributes)) "
            f"FROM session_steps WHERE {in_changed} GROUP BY pair, manager, step",
            parameters=parameters).result_rows if changed else ():
        if names.setdefault(int(pair), (manager, step)) != (manager, step):
            raise storage.StorageUnavailable(f"manager x step pairs of {site} share a hash in session_steps")
        kinds.extend(sorted(set(attributes) - set(kinds)))
    pair_hashes = sorted(names, key=names.__getitem__)
    span = (until - since).days
    pair_bits, day_bits = len(pair_hashes).bit_length(), span.bit_length()
    code_bits = len(kinds).bit_length()
    time_bits = 64 - pair_bits - day_bits - code_bits
    longest = max(state[2] for state in stored.values())
    parameters["kinds"] = kinds
    code = "indexOf({kinds:Array(String)}, attributes)"  # 0: attributes that arrived during the read
    if time_bits > 0 and longest * (span + 1) < 1 << time_bits:
        layout = _Layout(since, tuple(pair_hashes), pair_bits, day_bits, time_bits, code_bits)
        parameters["pairs"] = list(layout.pairs)
        per_pair, last = _read_packed(client, layout, kept, changed, stored, parameters, column, rng)
        with _kept_lock:
            _kept.setdefault(client, {})[(site, column)] = replace(last, names=names, kinds=tuple(kinds))
        fields = [layout.fields(values) for values in per_pair]
    else:  # too large to pack: four columns, the sessions on several days summed by ClickHouse
        current = f"(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {rng} GROUP BY day)"
        parameters["pairs"] = pair_hashes
        number = ("transform(pair, {pairs:Array(UInt64)}, range(length({pairs:Array(UInt64)})), "
                  "length({pairs:Array(UInt64)}))")
        rows = client.query_np(
            f"SELECT toUInt64({number}), toUInt64(min(day) - {{since:Date}}), toUInt64(sum({column})), "
            f"toUInt64(argMin({code}, day)) FROM session_steps WHERE {rng} AND {current} GROUP BY pair, session_key",
            parameters=parameters)
        if rows.size == 0:
            return []
        pair, offsets, times, codes = (np.asarray(rows[:, i], dtype=np.uint64) for i in range(4))
        order = np.lexsort((times, offsets, pair))
        pair, offsets, times, codes = pair[order], offsets[order], times[order], codes[order]
        bounds = np.searchsorted(pair, np.arange(len(pair_hashes) + 1, dtype=np.uint64)).tolist()
        fields = [(offsets[a:b], times[a:b], codes[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    pair_names = [names[h] for h in pair_hashes]
    # each session's stratum: the key of its attributes' declared values (attributes with the same
    # declared values share one), numbered among the strata present by a count, not a sort
    strata = [stratum_of_attributes(kind, declared) for kind in ["", *kinds]]
    found, stratum_of_code = np.unique(np.array(strata, dtype=object), return_inverse=True)
    in_pairs = sum((np.bincount(codes.astype(np.intp), minlength=len(strata)) for _, _, codes in fields),
                   np.zeros(len(strata), dtype=np.intp)) > 0
    present = np.bincount(stratum_of_code[in_pairs], minlength=found.size) > 0
    keys = found[present]
    numbered = ((np.cumsum(present) - 1)[stratum_of_code]).astype(np.min_scalar_type(max(keys.size, 1)))
    first_day = (since - date(1970, 1, 1)).days
    return [StratifiedTimes(*pair_names[i], times.view(np.int64),
                            (offsets.astype(np.int64) + first_day).view("datetime64[D]"),
                            numbered[codes.astype(np.intp)], keys)
            for i, (offsets, times, codes) in enumerate(fields) if times.size]


def _read_packed(client: Client, layout: _Layout, kept: _Kept | None, changed: list[date],
                 stored: dict[date, tuple[str, int, int]], parameters: dict[str, Any], column: str,
                 rng: str) -> tuple[list[np.ndarray], _Kept]:  # fmt: skip
    """Each pair's numbers (in `layout`'s order of pairs), sorted: the kept days' from memory, the
    changed days' from ClickHouse, the sessions with rows on several days summed by ClickHouse; and
    what to keep for the next read (its names and kinds left to the caller).

    Kept pair by pair, and put together pair by pair: each array is a pair's (a few thousand
    numbers), so a read allocates no block of tens of MB, which the heap of a process that ran an
    analysis before rarely has free in one piece (fresh memory is slow to touch on a virtual
    machine: stepwatch/memory.py)."""
    code = "indexOf({kinds:Array(String)}, attributes)"  # 0: attributes that arrived during the read
    if changed:
        newest = ("(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps "
                  "WHERE site = {site:String} AND day IN {changed:Array(Date)} GROUP BY day)")
        rows = client.query_np(f"SELECT {layout.sql('day', column, code)}, session_key FROM session_steps "
                               f"WHERE site = {{site:String}} AND day IN {{changed:Array(Date)}} AND {newest}",
                               parameters=parameters)
        rows = np.asarray(rows, dtype=np.uint64).reshape(-1, 2)
        new_values, new_keys = rows[:, 0], rows[:, 1]
    else:
        new_values = new_keys = np.zeros(0, dtype=np.uint64)
    if kept is None:
        # the first read: the sessions with rows on several days, found by one sort of the keys
        ordered = np.sort(new_keys)
        repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        found: list[Any] = []
    else:
        # sessions with rows on several days: those found before, and those with a row on a changed
        # day and another on any day of the range (ClickHouse looks the changed days' keys up),
        # with the pair and days of their rows
        found = client.query(
            f"SELECT session_key, pair, groupUniqArray(day) FROM session_steps WHERE {rng} AND session_key IN ("
            "SELECT session_key FROM session_steps WHERE site = {site:String} AND day IN {changed:Array(Date)}) "
            "GROUP BY session_key, pair HAVING uniqExact(day) > 1",
            parameters=parameters).result_rows if changed else []
        repeated = np.union1d(kept.repeated, np.array([row[0] for row in found], dtype=np.uint64))
    new_values, new_keys = _where(~_among(new_keys, repeated), new_values, new_keys)
    order = np.argsort(new_values)
    new_values, new_keys = new_values[order], new_keys[order]
    new_bounds = _pair_bounds(new_values, layout)
    values = [new_values[a:b] for a, b in zip(new_bounds[:-1], new_bounds[1:], strict=True)]
    keys = [new_keys[a:b] for a, b in zip(new_bounds[:-1], new_bounds[1:], strict=True)]
    if kept is not None:
        _add_kept(kept, layout, stored, changed, found, values, keys)
    summed = np.zeros(0, dtype=np.uint64)
    if repeated.size:  # summed, dated by their first day, by ClickHouse
        newest = f"(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {rng} GROUP BY day)"
        rows = client.query_np(
            f"SELECT {layout.sql('min(day)', f'sum({column})', f'argMin({code}, day)')}, session_key "
            "FROM session_steps "
            f"WHERE {rng} AND {newest} AND session_key IN {{repeated:Array(UInt64)}} GROUP BY pair, session_key",
            parameters={**parameters, "repeated": repeated.tolist()})
        rows = np.asarray(rows, dtype=np.uint64).reshape(-1, 2)
        summed = np.sort(rows[:, 0])
        repeated = np.unique(rows[:, 1])  # those no longer in the range are forgotten
    last = _Kept(layout, dict(stored), {}, (), values, keys, repeated)
    if not summed.size:
        return values, last
    summed_bounds = _pair_bounds(summed, layout)
    with_summed = list(values)
    for p in np.flatnonzero(np.diff(summed_bounds)).tolist():
        extra = summed[summed_bounds[p]:summed_bounds[p + 1]]
        with_summed[p] = np.insert(values[p], np.searchsorted(values[p], extra), extra)
    return with_summed, last


def _add_kept(kept: _Kept, layout: _Layout, stored: dict[date, tuple[str, int, int]], changed: list[date],
              found: list[Any], values: list[np.ndarray], keys: list[np.ndarray]) -> None:
    """Each pair's kept numbers of the range's unchanged days, moved to `layout`, joined with its
    new ones in `values` and `keys` (in place, pair by pair), without the rows of the sessions in
    `found` (now known to have rows on several days)."""
    old = kept.layout
    unchanged = sorted(set(stored) - set(changed))
    if not unchanged:
        return
    first, last = unchanged[0], unchanged[-1]
    # the common case: the unchanged days are the kept ones from the first on, with none changed
    # between: each pair's kept numbers from a place on (a slice), else a mask of the days
    contiguous = all(day in stored and day not in changed for day in kept.days if first <= day <= last) and \
        all(day in kept.days for day in unchanged)
    wanted = np.array([(d - old.since).days for d in unchanged], dtype=np.uint64)
    day_mask = np.uint64((1 << old.day_bits) - 1)
    number = {h: i for i, h in enumerate(old.pairs)}
    leave_out: dict[int, list[int]] = {}
    for key, pair, _ in found:
        if int(pair) in number:
            leave_out.setdefault(number[int(pair)], []).append(int(key))
    same = replace(layout, since=old.since) == old and layout.since >= old.since
    shift = np.uint64(((layout.since - old.since).days << layout.day_shift) if same else 0)
    for p, pair in enumerate(layout.pairs):
        o = number.get(pair)
        if o is None or not kept.values[o].size:
            continue
        mine, their_keys = kept.values[o], kept.keys[o]
        if contiguous:
            start = (o << old.pair_shift) + ((first - old.since).days << old.day_shift)
            end = (o << old.pair_shift) + (((last - old.since).days + 1) << old.day_shift)  # the next pair's, at most
            a, b = np.searchsorted(mine, np.array([start, end], dtype=np.uint64)).tolist()
            mine, their_keys = mine[a:b], their_keys[a:b]
        else:
            keep = np.isin((mine >> np.uint64(old.day_shift)) & day_mask, wanted)
            mine, their_keys = _where(keep, mine, their_keys)
        if o in leave_out:
            mine, their_keys = _where(~np.isin(their_keys, leave_out[o]), mine, their_keys)
        mine = mine - shift if same else old.moved_to(mine, layout)
        if values[p].size:  # the changed days' numbers where they belong (after the kept ones, mostly)
            joined_v, joined_k = np.concatenate([mine, values[p]]), np.concatenate([their_keys, keys[p]])
            if not bool(np.all(joined_v[1:] >= joined_v[:-1])):
                order = np.argsort(joined_v, kind="stable")
                joined_v, joined_k = joined_v[order], joined_k[order]
            values[p], keys[p] = joined_v, joined_k
        else:
            values[p], keys[p] = mine, their_keys


def _pair_bounds(values: np.ndarray, layout: _Layout) -> list[int]:
    """Where each pair's numbers start in sorted numbers, and where the last ends (a pair that
    arrived during the read, numbered one past the last, comes after it)."""
    starts = np.arange(len(layout.pairs) + 1, dtype=np.uint64) << np.uint64(layout.pair_shift)
    return np.searchsorted(values, starts).tolist()


def _where(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays where the mask holds (the arrays themselves when it holds everywhere)."""
    return arrays if mask.all() else tuple(a[mask] for a in arrays)


def _among(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Whether each key is in a sorted array of keys."""
    if not sorted_set.size or not keys.size:
        return np.zeros(keys.size, dtype=bool)
    at = np.searchsorted(sorted_set, keys).clip(max=sorted_set.size - 1)
    return sorted_set[at] == keys
