"""The daily pre-aggregate (session_steps) and its read give, session by session, exactly the figures
computed straight from the deduplicated visits: checkpoints, replays, sessions past midnight or
back on a later day, recomputed days, concurrent refreshes, hash collisions."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from kernel import sites, storage

TODAY = datetime.now(UTC).date()
DAY = TODAY - timedelta(days=5)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def report(manager: str, session: str, step: str, started: datetime, active: int, idle: int = 0, hidden: int = 0,
           seq: int = 0, visit_id: str | None = None) -> dict[str, Any]:
    return {"site": "crm", "visit_id": visit_id or str(uuid.uuid4()), "seq": seq, "final": True, "manager": manager,
            "session_id": session, "customer": "", "process": "sales", "step": step, "path": f"/{step}",
            "started_at": started.timestamp(), "active_ms": active, "idle_ms": idle, "hidden_ms": hidden,
            "tracker": "test", "source": "tracker"}


def insert(client: storage.Client, reports: list[dict[str, Any]]) -> None:
    storage.insert_visits(client, b"\n".join(json.dumps(r).encode() for r in reports))


def from_visits(client: storage.Client, since: date, until: date, metric: str = "visible"
                ) -> dict[tuple[str, str], list[tuple[int, date]]]:
    """The reference: each visit's latest report (the `visits` view), summed per session and step over
    the days from `since` to `until` (excluded), dated by the session's first day there."""
    rows = client.query(
        "SELECT manager, step, session_id, toDate(started_at), active_ms, idle_ms, hidden_ms FROM visits "
        "WHERE site = 'crm' AND toDate(started_at) >= {since:Date} AND toDate(started_at) < {until:Date}",
        parameters={"since": since, "until": until},
    ).result_rows
    sessions: dict[tuple[str, str, str], list[Any]] = {}
    for manager, step, session, day, active, idle, hidden in rows:
        value = {"visible": active + idle, "active": active, "wall": active + idle + hidden}[metric]
        total = sessions.setdefault((manager, step, session), [0, day])
        total[0] += value
        total[1] = min(total[1], day)
    pairs: dict[tuple[str, str], list[tuple[int, date]]] = defaultdict(list)
    for (manager, step, _), (value, day) in sessions.items():
        pairs[(manager, step)].append((value, day))
    return {pair: sorted(values, key=lambda v: (v[1], v[0])) for pair, values in pairs.items()}


def from_preaggregate(client: storage.Client, since: date, until: date, metric: str = "visible"
                      ) -> dict[tuple[str, str], list[tuple[int, date]]]:
    found = storage.session_step_times(client, "crm", since, until, metric)
    result = {}
    for pair in found:
        days = [date.fromisoformat(str(d)) for d in pair.days]
        result[(pair.manager, pair.step)] = [(int(t), d) for t, d in zip(pair.times_ms, days, strict=True)]
        assert [(d, t) for t, d in result[(pair.manager, pair.step)]] == sorted((d, t) for t, d in
                                                                                 result[(pair.manager, pair.step)])
    return result


def assert_same(client: storage.Client, since: date = DAY - timedelta(days=10), until: date = TODAY) -> None:
    for metric in ("visible", "active", "wall"):
        assert from_preaggregate(client, since, until, metric) == from_visits(client, since, until, metric), metric


@pytest.fixture
def history(client: storage.Client, site: sites.Site) -> storage.Client:
    checkpointed = str(uuid.uuid4())
    insert(client, [
        report("ana", "s1", "offer", at(DAY, 10), 90_000, idle=10_000, hidden=5_000),
        report("ana", "s2", "offer", at(DAY, 11), 150_000),  # back to the offer within the session
        report("ana", "s2", "offer", at(DAY, 11, 20), 20_000, idle=10_000),
        report("ana", "s3", "offer", at(DAY, 12), 15_000, seq=0, visit_id=checkpointed),  # checkpoints
        report("ana", "s3", "offer", at(DAY, 12), 30_000, seq=1, visit_id=checkpointed),
        report("ana", "s3", "offer", at(DAY, 12), 300_000, idle=20_000, seq=2, visit_id=checkpointed),
        report("ana", "s4", "offer", at(DAY, 23, 50), 40_000, hidden=7_000),  # past midnight
        report("ana", "s4", "offer", at(DAY + timedelta(days=1), 0, 10), 25_000, idle=5_000),
        report("ana", "s4", "needs", at(DAY + timedelta(days=1), 0, 20), 60_000),
        report("ana", "s5", "needs", at(DAY - timedelta(days=2), 9), 70_000),  # back three days later
        report("ana", "s5", "needs", at(DAY + timedelta(days=1), 9), 80_000, idle=1_000),
        report("ben", "s1", "offer", at(DAY, 10), 55_000),  # another manager, same session id
        report("ben", "s6", "offer", at(DAY + timedelta(days=2), 10), 65_000),
    ])
    insert(client, [report("ana", "s3", "offer", at(DAY, 12), 300_000, idle=20_000, seq=2,
                           visit_id=checkpointed)])  # a replayed batch
    storage.refresh_session_steps(client, "crm")
    return client


def test_the_preaggregate_gives_the_figures_of_the_visits(history: storage.Client) -> None:
    assert_same(history)
    pairs = from_preaggregate(history, DAY - timedelta(days=10), TODAY)
    # s4 spans midnight: 47 s + 30 s, dated by its first day; s5 came back three days later
    assert pairs[("ana", "offer")] == [(70_000, DAY), (100_000, DAY), (180_000, DAY), (320_000, DAY)]
    assert pairs[("ana", "needs")] == [(151_000, DAY - timedelta(days=2)), (60_000, DAY + timedelta(days=1))]


def test_a_range_that_cuts_a_session_counts_the_part_inside_it(history: storage.Client) -> None:
    day_after = DAY + timedelta(days=1)
    assert_same(history, day_after, TODAY)
    assert from_preaggregate(history, day_after, TODAY)[("ana", "offer")] == [(30_000, day_after)]
    assert_same(history, DAY, day_after)


def test_late_reports_recompute_their_days_and_stay_exact(history: storage.Client) -> None:
    s1 = history.query("SELECT visit_id FROM visits WHERE manager = 'ana' AND session_id = 's1'").result_rows[0][0]
    insert(history, [
        report("ana", "s1", "offer", at(DAY, 10), 95_000, idle=10_000, seq=7, visit_id=str(s1)),  # late checkpoint
        report("ana", "s4", "offer", at(DAY + timedelta(days=3), 8), 1_000),  # the session goes on, days later
        report("cy", "s7", "greeting", at(DAY + timedelta(days=1), 23, 59), 2_000),
    ])
    assert storage.refresh_session_steps(history, "crm") >= 3
    assert_same(history)
    assert_same(history, DAY + timedelta(days=1), TODAY)


def test_versions_left_by_concurrent_refreshes_are_not_counted(history: storage.Client) -> None:
    """Two refreshes of the same days, the older rows not deleted yet: the newest version counts."""
    for table in ("session_steps", "pair_days"):
        history.command(f"SYSTEM STOP MERGES {table}")  # deletes of the older rows wait
    try:
        history.command("TRUNCATE TABLE analysis_state")
        insert(history, [report("ana", "s8", "offer", at(DAY, 15), 33_000)])
        storage.refresh_session_steps(history, "crm")
        for table in ("session_steps", "pair_days"):
            versions = history.query(f"SELECT day, uniqExact(computed_at) FROM {table} GROUP BY day").result_rows
            assert any(count > 1 for _, count in versions), table
        assert_same(history)
        # the coaching chart's daily medians, from pair_days: each day as its newest refresh, not an
        # older one (planted: ten times slower)
        history.command(
            "INSERT INTO session_steps (site, day, manager, step, session_id, visible_ms, active_ms, wall_ms, "
            "computed_at) SELECT site, day, manager, step, session_id, visible_ms * 10, active_ms * 10, wall_ms * 10, "
            "toDateTime64('2000-01-01 00:00:00', 6, 'UTC') FROM session_steps WHERE day = {day:Date}",
            parameters={"day": DAY})
        since, until = DAY - timedelta(days=10), TODAY
        newest = history.query(
            "SELECT day, manager = 'ana', quantileExactInclusiveArray(0.5)(visible_ms) FROM pair_days "
            "WHERE (day, computed_at) IN (SELECT day, max(computed_at) FROM pair_days GROUP BY day) "
            "AND step = 'offer' AND manager IN ('ana', 'ben') GROUP BY day, manager").result_rows
        assert storage.daily_step_medians(history, "crm", "offer", since, until, own="ana", others=["ben"]) == {
            (day, bool(mine)): median for day, mine, median in newest}
    finally:
        for table in ("session_steps", "pair_days"):
            history.command(f"SYSTEM START MERGES {table}")


def test_the_fallbacks_give_the_same_figures(history: storage.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_REPEATED_AS_PARAMETER", 0)  # many repeated sessions: ClickHouse finds them again
    assert_same(history)
    # every pair sharing one key: the read falls back to another hash of the same strings
    monkeypatch.setattr(storage, "_PAIR_KEYS", (("toUInt64(7)", "toUInt64(7)"), *storage._PAIR_KEYS[1:]))
    assert_same(history)
    monkeypatch.undo()
    monkeypatch.setattr(storage, "_TIME_BITS", 10)  # sessions too long to pack: ClickHouse sorts
    assert_same(history)
    assert_same(history, DAY + timedelta(days=1), TODAY)
    monkeypatch.undo()
    monkeypatch.setattr(storage, "_PAIR_BITS", 3)  # many managers x steps: the pairs that are there
    assert_same(history)


def test_one_step_reads_only_that_steps_sessions_with_the_same_figures(history: storage.Client) -> None:
    since = DAY - timedelta(days=10)
    every = {(p.manager, p.step): p for p in storage.session_step_times(history, "crm", since, TODAY)}
    offer = storage.session_step_times(history, "crm", since, TODAY, step="offer")
    assert sorted((p.manager, p.step) for p in offer) == [("ana", "offer"), ("ben", "offer")]
    for pair in offer:
        assert np.array_equal(pair.times_ms, every[(pair.manager, pair.step)].times_ms)
        assert np.array_equal(pair.days, every[(pair.manager, pair.step)].days)
    assert storage.session_step_times(history, "crm", since, TODAY, step="nowhere") == []


def test_daily_medians_for_the_chart_are_the_medians_of_each_days_sessions(history: storage.Client) -> None:
    since, until = DAY - timedelta(days=10), TODAY
    medians = storage.daily_step_medians(history, "crm", "offer", since, until, own="ana", others=["ben"])
    # the chart's medians count a session past midnight on each of its days (s4: 40 s, then 30 s)
    assert medians[(DAY, True)] == float(np.median([40_000, 100_000, 180_000, 320_000]))
    assert medians[(DAY + timedelta(days=1), True)] == 30_000.0
    assert medians[(DAY, False)] == 55_000.0 and medians[(DAY + timedelta(days=2), False)] == 65_000.0
    assert len(medians) == 4
    assert storage.daily_step_medians(history, "crm", "offer", since, until, own="ana", others=[]) == {
        k: v for k, v in medians.items() if k[1]}


def test_the_read_comes_as_arrays_ordered_by_day_then_time(history: storage.Client) -> None:
    for pair in storage.session_step_times(history, "crm", DAY - timedelta(days=10), TODAY):
        assert pair.times_ms.dtype == np.int64 and pair.days.dtype == np.dtype("datetime64[D]")
        order = np.lexsort((pair.times_ms, pair.days))
        assert np.array_equal(order, np.arange(pair.times_ms.size))


def test_an_empty_range_reads_nothing(history: storage.Client) -> None:
    assert storage.session_step_times(history, "crm", TODAY + timedelta(days=5), TODAY + timedelta(days=9)) == []


def test_migration_0012_rebuilds_the_preaggregate_from_the_visits(history: storage.Client) -> None:
    from kernel import migrations

    before = from_preaggregate(history, DAY - timedelta(days=10), TODAY)
    (rebuild,) = [m for m in migrations.discover() if m.version == 12]
    later = [m for m in migrations.discover() if m.version > 12 and "ALTER TABLE session_steps" in m.sql]
    for migration in (rebuild, *later):  # as on a store upgraded from the 0007 table
        for statement in migration.statements():
            history.command(statement)
    assert storage.session_step_times(history, "crm", DAY - timedelta(days=10), TODAY) == []
    assert storage.refresh_session_steps(history, "crm") >= 4
    assert from_preaggregate(history, DAY - timedelta(days=10), TODAY) == before
    assert_same(history)


def test_daily_medians_for_dating_an_onset_are_each_days_medians(history: storage.Client) -> None:
    since, until = DAY - timedelta(days=10), TODAY
    read = storage.pair_daily_medians(history, "crm", [("ana", "offer"), ("ben", "offer"), ("cy", "offer")],
                                      since, until)
    assert set(read) == {("ana", "offer"), ("ben", "offer")}  # cy has no sessions: left out
    days, medians = read[("ana", "offer")]
    assert days.dtype == np.dtype("datetime64[D]")
    # as the chart's: a session past midnight counts on each of its days (s4: 40 s, then 30 s)
    assert [str(d) for d in days] == [str(DAY), str(DAY + timedelta(days=1))]
    assert list(medians) == [float(np.median([40_000, 100_000, 180_000, 320_000])), 30_000.0]
    assert storage.pair_daily_medians(history, "crm", [("ana", "offer")], until, since) == {}
    assert storage.pair_daily_medians(history, "crm", [], since, until) == {}


def test_a_day_split_over_several_rows_gives_the_median_of_all_of_them(history: storage.Client) -> None:
    # an insert in several blocks gives a pair several rows for one day, of the same refresh
    history.command(
        "INSERT INTO pair_days (site, day, pair, manager, step, visible_ms, active_ms, wall_ms, computed_at) "
        "SELECT site, day, pair, manager, step, [1000, 2000, 3000], [1000, 2000, 3000], [1000, 2000, 3000], "
        "computed_at FROM pair_days WHERE site = 'crm' AND manager = 'ben' AND day = {day:Date}",
        parameters={"day": DAY},
    )
    days, medians = storage.pair_daily_medians(history, "crm", [("ben", "offer")], DAY - timedelta(days=1),
                                               TODAY)[("ben", "offer")]
    assert [str(d) for d in days] == [str(DAY), str(DAY + timedelta(days=2))]
    assert list(medians) == [float(np.median([55_000, 1000, 2000, 3000])), 65_000.0]
