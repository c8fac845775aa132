"""The like-for-like read's packed numbers (stepwatch/stratified_read.py): moving the numbers a
process kept to the layout of its next read keeps every field and the order."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from stepwatch.stratified_read import _Layout

OLD = _Layout(date(2026, 11, 7), (30, 10, 20), 2, 5, 50, 2)


def _numbers(layout: _Layout, rng: np.random.Generator, n: int = 5_000) -> tuple[np.ndarray, ...]:
    fields = (rng.integers(0, 3, n), rng.integers(1, 29, n), rng.integers(0, 1 << 30, n), rng.integers(0, 4, n))
    return tuple(np.asarray(f, dtype=np.uint64) for f in fields)


@pytest.mark.parametrize("new", [
    _Layout(date(2026, 11, 8), (30, 10, 20), 2, 5, 50, 2),  # the next day: one subtraction
    _Layout(date(2026, 11, 8), (30, 40, 10, 20), 3, 5, 48, 3),  # a new pair between, more kinds
    _Layout(date(2026, 10, 30), (30, 10, 20), 2, 6, 49, 2),  # a longer range from an earlier day
])
def test_numbers_moved_to_another_layout_keep_their_fields_and_order(new: _Layout) -> None:
    pair, offsets, times, codes = _numbers(OLD, np.random.default_rng(3))
    values = np.sort(OLD.pack(pair, offsets, times, codes))
    moved = OLD.moved_to(values, new)
    assert np.all(moved[1:] >= moved[:-1])  # still sorted: a kept read merges with a sort that finds one run
    old_fields, new_fields = OLD.unpack(values), new.unpack(moved)
    renumbered = np.array([new.pairs.index(h) for h in OLD.pairs], dtype=np.uint64)
    assert np.array_equal(new_fields[0], renumbered[old_fields[0].astype(np.intp)])
    days = (new.since - OLD.since).days
    assert np.array_equal(new_fields[1].astype(np.int64), old_fields[1].astype(np.int64) - days)
    assert np.array_equal(new_fields[2], old_fields[2]) and np.array_equal(new_fields[3], old_fields[3])
