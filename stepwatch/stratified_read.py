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
    values: np.ndarray  # the numbers of the sessions with rows on one day, sorted
    keys: np.ndarray  # each of those numbers' session key
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
    the sessions with rows on several days are summed by ClickHouse; one sort of the numbers puts
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
        values, last = _read_packed(client, layout, kept, changed, stored, parameters, column, rng)
        with _kept_lock:
            _kept.setdefault(client, {})[(site, column)] = replace(last, names=names, kinds=tuple(kinds))
        # each pair's sessions: a pair that arrived after the names were read (numbered one past
        # the last) comes after the last bound
        bounds = np.searchsorted(values, np.arange(len(pair_hashes) + 1, dtype=np.uint64)
                                 << np.uint64(layout.pair_shift))
        offsets, times, codes = layout.fields(values)
    else:  # too large to pack: four columns, the sessions on several days summed by ClickHouse
        with _kept_lock:
            _kept.get(client, {}).pop((site, column), None)
        current = f"(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {rng} GROUP BY day)"
        parameters["pairs"] = pair_hashes
        number = ("transform(pair, {pairs:Array(UInt64)}, range(length({pairs:Array(UInt64)})), "
                  "length({pairs:Array(UInt64)}))")
        rows = client.query_np(
            f"SELECT toUInt64({number}), toUInt64(min(day) - {{since:Date}}), toUInt64(sum({column})), "
            f"toUInt64(any({code})) FROM session_steps WHERE {rng} AND {current} GROUP BY pair, session_key",
            parameters=parameters)
        if rows.size == 0:
            return []
        pair, offsets, times, codes = (np.asarray(rows[:, i], dtype=np.uint64) for i in range(4))
        order = np.lexsort((times, offsets, pair))
        pair, offsets, times, codes = pair[order], offsets[order], times[order], codes[order]
        bounds = np.searchsorted(pair, np.arange(len(pair_hashes) + 1, dtype=np.uint64))
    pair_names = [names[h] for h in pair_hashes]
    # each session's stratum: the key of its attributes' declared values (attributes with the same
    # declared values share one), numbered among the strata present by a count, not a sort
    strata = [stratum_of_attributes(kind, declared) for kind in ["", *kinds]]
    found, stratum_of_code = np.unique(np.array(strata, dtype=object), return_inverse=True)
    codes = codes.astype(np.min_scalar_type(len(strata)))  # a byte a session, mostly
    in_pairs = np.bincount(codes[:bounds[-1]], minlength=len(strata)) > 0
    present = np.bincount(stratum_of_code[in_pairs], minlength=found.size) > 0
    keys = found[present]
    codes = ((np.cumsum(present) - 1)[stratum_of_code]).astype(codes.dtype)[codes]
    # in place, without copies of three million numbers (a machine's first touch of memory is slow)
    days = offsets.view(np.int64)
    days += (since - date(1970, 1, 1)).days
    days = days.view("datetime64[D]")
    times = times.view(np.int64)
    return [StratifiedTimes(*pair_names[i], times[a:b], days[a:b], codes[a:b], keys)
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if b > a]


def _read_packed(client: Client, layout: _Layout, kept: _Kept | None, changed: list[date],
                 stored: dict[date, tuple[str, int, int]], parameters: dict[str, Any], column: str,
                 rng: str) -> tuple[np.ndarray, _Kept]:  # fmt: skip
    """The range's numbers, sorted: the kept days' from memory, the changed days' from ClickHouse,
    the sessions with rows on several days summed by ClickHouse; and what to keep for the next read
    (its names and kinds left to the caller)."""
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
        new_values, new_keys = _where(~_among(new_keys, repeated), new_values, new_keys)
        order = np.argsort(new_values)
        values, keys = new_values[order], new_keys[order]
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
        values, keys = _merged(kept, layout, sorted(set(stored) - set(changed)), changed, new_values[order],
                               new_keys[order], found)
    summed = np.zeros(0, dtype=np.uint64)
    if repeated.size:  # summed, dated by their first day, by ClickHouse
        newest = f"(day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {rng} GROUP BY day)"
        rows = client.query_np(
            f"SELECT {layout.sql('min(day)', f'sum({column})', f'any({code})')}, session_key FROM session_steps "
            f"WHERE {rng} AND {newest} AND session_key IN {{repeated:Array(UInt64)}} GROUP BY pair, session_key",
            parameters={**parameters, "repeated": repeated.tolist()})
        rows = np.asarray(rows, dtype=np.uint64).reshape(-1, 2)
        summed = rows[:, 0]
        repeated = np.unique(rows[:, 1])  # those no longer in the range are forgotten
    last = _Kept(layout, dict(stored), {}, (), values, keys, repeated)
    return (np.sort(np.concatenate([values, summed]), kind="stable") if summed.size else values), last


def _merged(kept: _Kept, layout: _Layout, unchanged: list[date], changed: list[date], new_values: np.ndarray,
            new_keys: np.ndarray, found: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The kept numbers of the unchanged days and the changed days' new ones (sorted, in `layout`),
    one sorted array in `layout`, with their keys; without the rows of the sessions in `found`.

    Every (pair, day) is one block of each sorted array: the result is the blocks in order, each
    from the kept numbers or the new ones, joined by one concatenation. Kept numbers only moved to
    a later first day are moved in place (the kept arrays are replaced by the result): a read
    after a new day then touches no memory but the result's (fresh memory is slow to touch on a
    virtual machine: stepwatch/memory.py)."""
    old, fresh_days, unchanged_set = kept.layout, set(changed), set(unchanged)
    days = sorted([*unchanged, *changed])
    if replace(layout, since=old.since) == old and layout.since >= old.since:  # only a later first day
        old_values, old_keys, cells_in = kept.values, kept.keys, old
        shift = (layout.since - old.since).days
    else:  # other pairs or bit widths: the kept days of the range, moved to the new layout
        offsets = (kept.values >> np.uint64(old.day_shift)) & np.uint64((1 << old.day_bits) - 1)
        wanted = np.isin(offsets, np.array([(d - old.since).days for d in unchanged], dtype=np.uint64))
        old_values, old_keys = _where(wanted, kept.values, kept.keys)
        old_values, cells_in, shift = old.moved_to(old_values, layout), layout, 0
    old_bounds = _block_bounds(old_values, cells_in, unchanged).tolist()
    new_bounds = _block_bounds(new_values, layout, changed).tolist()
    if shift:  # in place: the rows of the days before the new first day go nowhere
        old_values -= np.uint64(shift << layout.day_shift)
    # the sessions now known to have rows on several days, out of the kept blocks that hold them
    number = {h: i for i, h in enumerate(layout.pairs)}
    leave_out: dict[tuple[int, date], list[int]] = {}
    for key, pair, on_days in found:
        for day in on_days:
            if int(pair) in number and day not in fresh_days and day in unchanged_set:
                leave_out.setdefault((number[int(pair)], day), []).append(int(key))
    old_day, new_day = {d: j for j, d in enumerate(unchanged)}, {d: j for j, d in enumerate(changed)}
    pieces_v: list[np.ndarray] = []
    pieces_k: list[np.ndarray] = []
    for p in range(len(layout.pairs)):
        run_start = run_end = -1  # a run of adjacent kept blocks, taken as one slice
        for d in days:
            fresh = d in fresh_days
            if not fresh and (p, d) not in leave_out:
                a, b = old_bounds[p][old_day[d]]
                if a == run_end:
                    run_end = b
                    continue
                if run_end > run_start:
                    pieces_v.append(old_values[run_start:run_end])
                    pieces_k.append(old_keys[run_start:run_end])
                run_start, run_end = a, b
                continue
            if run_end > run_start:
                pieces_v.append(old_values[run_start:run_end])
                pieces_k.append(old_keys[run_start:run_end])
            run_start = run_end = -1
            if fresh:
                a, b = new_bounds[p][new_day[d]]
                pieces_v.append(new_values[a:b])
                pieces_k.append(new_keys[a:b])
            else:
                a, b = old_bounds[p][old_day[d]]
                keep = ~np.isin(old_keys[a:b], np.array(leave_out[(p, d)], dtype=np.uint64))
                pieces_v.append(old_values[a:b][keep])
                pieces_k.append(old_keys[a:b][keep])
        if run_end > run_start:
            pieces_v.append(old_values[run_start:run_end])
            pieces_k.append(old_keys[run_start:run_end])
    if not pieces_v:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(pieces_v), np.concatenate(pieces_k)


def _block_bounds(values: np.ndarray, layout: _Layout, days: list[date]) -> np.ndarray:
    """Where each pair's block of each day starts and ends in sorted numbers: (pairs, days, 2)."""
    pairs = np.arange(len(layout.pairs), dtype=np.uint64) << np.uint64(layout.pair_shift)
    offsets = np.array([(d - layout.since).days for d in days], dtype=np.uint64) << np.uint64(layout.day_shift)
    first = pairs[:, None] | offsets[None, :]
    after = first + np.uint64(1 << layout.day_shift)
    return np.stack([np.searchsorted(values, first), np.searchsorted(values, after)], axis=-1)


def _where(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays where the mask holds (the arrays themselves when it holds everywhere)."""
    return arrays if mask.all() else tuple(a[mask] for a in arrays)


def _among(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Whether each key is in a sorted array of keys."""
    if not sorted_set.size or not keys.size:
        return np.zeros(keys.size, dtype=bool)
    at = np.searchsorted(sorted_set, keys).clip(max=sorted_set.size - 1)
    return sorted_set[at] == keys
