"""The analysis over stored data: events in, stats and flags out, exactly as computed by hand."""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from analysis.stats import Window
from collector import keys
from kernel import band_versions, flag_store, processes, sites, storage, teams
from kernel.settings import Settings
from stepwatch import analysis_run, demo, stratified_read
from stepwatch.app import create_app
from tests.test_processes import EXAMPLE

TODAY = datetime.now(UTC).date()


def visit(manager: str, session: str, step: str, day: date, active: int, idle: int = 0, hidden: int = 0,
          seq: int = 0, visit_id: str | None = None) -> dict[str, Any]:
    # 10:00, or just now on a day whose 10:00 is still to come (the collector refuses the future)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    at = max(midnight, min(midnight + timedelta(hours=10), datetime.now(UTC) - timedelta(seconds=1)))
    started = at.timestamp() * 1000
    return {"type": "visit", "visit_id": visit_id or str(uuid.uuid4()), "seq": seq, "manager": manager,
            "session_id": session, "process": "sales", "step": step, "started_at": int(started),
            "active_ms": active, "idle_ms": idle, "hidden_ms": hidden}


async def test_tiny_dataset_from_tracker_events_to_stats(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site
) -> None:
    """Three sessions on the offer step, one visited twice, with checkpoints and a replayed batch."""
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    band_versions.add_version(client, site.name, "offer", "", 60_000, 120_000, 240_000, TODAY - timedelta(days=30),
                              actor="test", reason="test")
    api = await aiohttp_client(create_app(settings))
    day = TODAY - timedelta(days=1)
    checkpointed = str(uuid.uuid4())
    events = [
        visit("m-1", "s1", "offer", day, 90_000, idle=10_000, hidden=5_000),      # s1: 100 s visible
        visit("m-1", "s2", "offer", day, 150_000),                                # s2: 150 s + 30 s below
        visit("m-1", "s2", "offer", day, 20_000, idle=10_000),
        visit("m-1", "s3", "offer", day, 15_000, seq=0, visit_id=checkpointed),   # s3: checkpoints of one visit
        visit("m-1", "s3", "offer", day, 30_000, seq=1, visit_id=checkpointed),
        visit("m-1", "s3", "offer", day, 300_000, idle=20_000, seq=2, visit_id=checkpointed),  # final: 320 s
    ]
    for _ in range(2):  # the same batch delivered twice
        body = json.dumps({"site": site.key, "events": events}).encode()
        response = await api.post("/v1/events", data=io.BytesIO(body), headers={"Content-Type": "text/plain"})
        assert response.status == 200
    await api.server.app[keys.WRITER].ship()

    run = analysis_run.run_site(client, site.name, settings, Window(TODAY - timedelta(days=13), TODAY))
    rows = {(r["manager"], r["step"]): r for r in analysis_run.stats_rows(client, run)}
    offer = rows[("m-1", "offer")]
    assert offer["n"] == 3
    assert offer["median_ms"] == 180_000  # sessions: 100 s, 180 s, 320 s
    assert offer["p90_ms"] == pytest.approx(np.percentile([100_000, 180_000, 320_000], 90))
    assert offer["status"] == "insufficient"  # 3 sessions < 20
    assert offer["band"] == {"min_ms": 60_000, "reference_ms": 120_000, "max_ms": 240_000}
    assert offer["share_above_max"] == pytest.approx(1 / 3, abs=1e-4)

    wall = settings.model_copy(update={"analysis_metric": "wall"})
    run = analysis_run.run_site(client, site.name, wall, Window(TODAY - timedelta(days=13), TODAY))
    assert next(r for r in analysis_run.stats_rows(client, run) if r["step"] == "offer")["median_ms"] == 180_000
    active = settings.model_copy(update={"analysis_metric": "active"})
    run = analysis_run.run_site(client, site.name, active, Window(TODAY - timedelta(days=13), TODAY))
    assert next(r for r in analysis_run.stats_rows(client, run) if r["step"] == "offer")["median_ms"] == 170_000


def test_the_band_in_force_on_the_last_day_is_used(client: storage.Client, site: sites.Site,
                                                   settings: Settings) -> None:
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    teams.add_team(client, site.name, "north", actor="test")
    teams.assign(client, site.name, "north", ["m-1"], actor="test")
    rows = [visit("m-1", f"s{i}", "offer", TODAY - timedelta(days=2), 100_000) for i in range(3)]
    rows += [visit("m-2", f"t{i}", "offer", TODAY - timedelta(days=2), 100_000) for i in range(3)]
    from collector.events import check_events, parse_batch

    checked = check_events(parse_batch(json.dumps({"site": "k", "events": rows}).encode()), site=site.name,
                           settings=settings)
    storage.insert_visits(client, b"\n".join(checked.visits))
    window = Window(TODAY - timedelta(days=13), TODAY)
    assert {r["status"] for r in analysis_run.stats_rows(client, analysis_run.run_site(client, site.name, settings,
                                                                                        window))} == {"no_band"}
    add = band_versions.add_version
    add(client, site.name, "offer", "", 1000, 50_000, 90_000, TODAY - timedelta(days=40), actor="t", reason="old")
    add(client, site.name, "offer", "", 1000, 60_000, 90_000, TODAY - timedelta(days=5), actor="t", reason="new")
    add(client, site.name, "offer", "", 1000, 70_000, 90_000, TODAY + timedelta(days=5), actor="t", reason="future")
    add(client, site.name, "offer", "north", 1000, 80_000, 95_000, TODAY - timedelta(days=20), actor="t", reason="n")
    rows_by_manager = {r["manager"]: r for r in analysis_run.stats_rows(
        client, analysis_run.run_site(client, site.name, settings, window))}
    assert rows_by_manager["m-2"]["band"]["reference_ms"] == 60_000  # the default in force today
    assert rows_by_manager["m-1"]["band"]["reference_ms"] == 80_000  # the team's override
    earlier = Window(TODAY - timedelta(days=30), TODAY - timedelta(days=10))
    old = analysis_run.run_site(client, site.name, settings, earlier)
    assert old.result.assessments == () or all(a.band.reference_ms != 60_000 for a in old.result.assessments)


@pytest.fixture
def demo_truth(client: storage.Client) -> demo.DemoTruth:
    return demo.build(client, seed=11, managers=18, days=35)


@pytest.fixture
def demo_client(client: storage.Client, demo_truth: demo.DemoTruth) -> storage.Client:
    from analysis.bands import suggest_band

    window = Window(TODAY - timedelta(days=34), TODAY)
    storage.refresh_session_steps(client, demo.SITE)
    pairs = storage.session_step_times(client, demo.SITE, window.since, TODAY + timedelta(days=1))
    for step in demo.STEP_SECONDS:
        times = np.concatenate([p.times_ms for p in pairs if p.step == step])
        managers = np.concatenate([np.full(p.times_ms.size, p.manager) for p in pairs if p.step == step])
        band = suggest_band(times, managers=managers).band
        band_versions.add_version(client, demo.SITE, step, "", band.min_ms, band.reference_ms, band.max_ms,
                                  TODAY - timedelta(days=60), actor="test", reason="test")
    return client


@pytest.mark.slow
def test_analyze_opens_flags_for_the_planted_drawdowns_once(
    demo_client: storage.Client, demo_truth: demo.DemoTruth, settings: Settings
) -> None:
    runs = analysis_run.analyze(demo_client, settings)
    flags = flag_store.current(demo_client, demo.SITE)
    assert flags and all(f.status == "open" for f in flags)
    flagged = {(f.kind, f.manager, f.step) for f in flags}
    # a planted slowdown is flagged on its own, or inside a systemic flag when much of the team is slow
    flagged |= {("slow", m, f.step) for f in flags if f.kind == "systemic" for m in f.managers}
    for planted in demo_truth.planted:
        if planted.kind in ("slow", "fast"):
            assert (planted.kind, planted.manager, planted.step) in flagged, planted
    assert len(flags) == len(runs[0].result.drawdowns)
    events = storage.query_rows(demo_client, "SELECT count() AS n FROM flag_events")[0]["n"]
    analysis_run.analyze(demo_client, settings)  # idempotent: nothing new opens, nothing is logged again
    assert len(flag_store.current(demo_client, demo.SITE)) == len(flags)
    assert storage.query_rows(demo_client, "SELECT count() AS n FROM flag_events")[0]["n"] == events


@pytest.mark.slow
def test_flags_resolve_after_two_quiet_periods_and_reopen_when_it_recurs(
    demo_client: storage.Client, settings: Settings
) -> None:
    analysis_run.analyze(demo_client, settings)
    flag = flag_store.current(demo_client, demo.SITE)[0]
    run = analysis_run.run_site(demo_client, demo.SITE, settings, analysis_run.window_ending(TODAY, 14))
    quiet = analysis_run.SiteRun(run.site, run.window, type(run.result)(run.window, run.result.assessments, ()),
                                 run.without_band, run.teams)
    limits = analysis_run.thresholds(settings)
    for weeks in (1, 2):  # two later weekly periods without the condition
        later = analysis_run.SiteRun(quiet.site, analysis_run.window_ending(TODAY + timedelta(weeks=weeks), 14),
                                     quiet.result, quiet.without_band, quiet.teams)
        analysis_run.sync_flags(demo_client, later, limits)
    resolved = flag_store.get(demo_client, flag.flag_id)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    history = flag_store.history(demo_client, flag.flag_id)
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in history] == [
        ("", "open", "analysis"), ("open", "resolved", "analysis")]
    assert "resolved automatically" in history[-1]["reason"]

    analysis_run.sync_flags(demo_client, run, limits)  # the condition is back
    assert flag_store.get(demo_client, flag.flag_id).status == "open"
    assert flag_store.history(demo_client, flag.flag_id)[-1]["reason"] == "condition recurred: reopened"
    kpi = flag_store.resolution_times(demo_client, demo.SITE)
    assert kpi and kpi[0]["resolved"] >= 1


def test_the_daily_preaggregate_follows_late_checkpoints_and_skips_quiet_runs(
    client: storage.Client, site: sites.Site, settings: Settings
) -> None:
    from collector.events import check_events, parse_batch

    def insert(events: list[dict[str, Any]]) -> None:
        checked = check_events(parse_batch(json.dumps({"site": "k", "events": events}).encode()), site=site.name,
                               settings=settings)
        storage.insert_visits(client, b"\n".join(checked.visits))

    day = TODAY - timedelta(days=3)
    visit_id = str(uuid.uuid4())
    insert([visit("m-1", "s1", "offer", day, 10_000, seq=0, visit_id=visit_id),
            visit("m-1", "s2", "offer", day - timedelta(days=1), 5_000)])
    assert storage.refresh_session_steps(client, site.name) == 2
    # a quiet run redoes at most the days of the last millisecond it saw (idempotent), nothing else
    assert storage.refresh_session_steps(client, site.name) <= 2

    def times() -> list[int]:
        pairs = storage.session_step_times(client, site.name, day - timedelta(days=5), TODAY + timedelta(days=1))
        return sorted(int(t) for p in pairs for t in p.times_ms)

    assert times() == [5_000, 10_000]
    insert([visit("m-1", "s1", "offer", day, 40_000, seq=3, visit_id=visit_id)])  # a late checkpoint, same visit
    assert storage.refresh_session_steps(client, site.name) >= 1
    assert times() == [5_000, 40_000]


def test_onsets_are_dated_on_90_days_and_a_watch_is_kept_apart(client: storage.Client, site: sites.Site,
                                                                settings: Settings) -> None:
    """ana slowed 50 days ago (before the 4-week look-back), bo's data begins inside his drawdown,
    cy drifts up over the last days: dated, "at least", on watch."""
    from collector.events import check_events, parse_batch

    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    band_versions.add_version(client, site.name, "offer", "", 60_000, 120_000, 240_000, TODAY - timedelta(days=200),
                              actor="test", reason="test")
    rng = np.random.default_rng(5)
    rows = []
    for back in range(70, 0, -1):
        day = TODAY - timedelta(days=back)
        wobble = float(np.exp(rng.normal(0, 0.05)))
        levels = {f"normal-{i}": 1.0 for i in range(6)} | {"ana": 3.3 if back <= 50 else 1.0,
                                                            "cy": 1.9 if back <= 4 else 1.0}
        if back <= 20:
            levels["bo"] = 3.3
        for manager, level in levels.items():
            rows += [visit(manager, f"{manager}-{back}-{i}", "offer", day,
                           int(120_000 * level * wobble * np.exp(rng.normal(0, 0.1)))) for i in range(5)]
    for first in range(0, len(rows), 2000):
        batch = json.dumps({"site": "k", "events": rows[first:first + 2000]}).encode()
        storage.insert_visits(client, b"\n".join(check_events(parse_batch(batch), site=site.name,
                                                              settings=settings).visits))
    [run] = analysis_run.analyze(client, settings, until=TODAY - timedelta(days=1), only_site=site.name)
    flags = {f.manager: f for f in flag_store.current(client, site.name)}
    assert set(flags) == {"ana", "bo"}
    assert abs((flags["ana"].start_date - (TODAY - timedelta(days=50))).days) <= 2  # type: ignore[operator]
    assert flags["ana"].start_at_least is False
    assert (flags["bo"].start_date, flags["bo"].start_at_least) == (TODAY - timedelta(days=20), True)
    assert [a.manager for a in run.result.watches] == ["cy"]
    rows_by_manager = {r["manager"]: r for r in analysis_run.stats_rows(client, run)}
    assert rows_by_manager["cy"]["status"] == "watch" and rows_by_manager["cy"]["flag_id"] is None
    assert rows_by_manager["bo"]["start_at_least"] is True
    assert rows_by_manager["ana"]["start_date"] == flags["ana"].start_date


def test_time_lost_peers_and_flags_of_every_pair(client: storage.Client, site: sites.Site,
                                                 settings: Settings) -> None:
    """north: ana slow inside the band (the peer rule), dan ok a little above the reference, fay fast;
    south: bea and carl above the max (a systemic flag), eve ok a little above the reference."""
    from collector.events import check_events, parse_batch

    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    band_versions.add_version(client, site.name, "offer", "", 60_000, 120_000, 240_000, TODAY - timedelta(days=200),
                              actor="test", reason="test")
    levels = {"north": {**{f"n-{i}": 1.0 for i in range(5)}, "ana": 1.5, "dan": 1.05, "fay": 0.3},
              "south": {"s-0": 1.0, "s-1": 1.0, "eve": 1.05, "bea": 3.3, "carl": 3.0}}
    for team, members in levels.items():
        teams.add_team(client, site.name, team, actor="test")
        teams.assign(client, site.name, team, list(members), actor="test")
    rng = np.random.default_rng(7)
    rows = []
    for back in range(30, 0, -1):
        day = TODAY - timedelta(days=back)
        for members in levels.values():
            for manager, level in members.items():
                rows += [visit(manager, f"{manager}-{back}-{i}", "offer", day,
                               int(120_000 * level * np.exp(rng.normal(0, 0.1)))) for i in range(5)]
    batch = json.dumps({"site": "k", "events": rows}).encode()
    storage.insert_visits(client, b"\n".join(check_events(parse_batch(batch), site=site.name,
                                                          settings=settings).visits))
    [run] = analysis_run.analyze(client, settings, until=TODAY - timedelta(days=1), only_site=site.name)
    row = {r["manager"]: r for r in analysis_run.stats_rows(client, run)}
    flags = {(f.kind, f.manager): f for f in flag_store.current(client, site.name)}

    ana = row["ana"]  # 180 s against a max of 240 s: slow by the peer rule, and it loses time
    assert ana["status"] == "slow" and ana["median_ms"] < ana["band"]["max_ms"]
    assert ana["minutes_lost_per_week"] == ana["minutes_above_reference_per_week"] > 0
    assert ana["peers"] == {"slower_than": 7, "of": 7}  # every teammate with a verdict, fay's fast one included
    assert (ana["flag_id"], ana["flag_kind"]) == (flags[("slow", "ana")].flag_id, "slow")
    for ok in ("dan", "eve"):  # on track, above the reference: no time lost
        assert row[ok]["status"] == "ok" and row[ok]["flag_id"] is None and row[ok]["flag_kind"] is None
        assert row[ok]["minutes_lost_per_week"] == 0.0 and row[ok]["minutes_above_reference_per_week"] > 0
    assert row["dan"]["peers"] == {"slower_than": 6, "of": 7}  # slower than the five at the reference and fay
    fay = row["fay"]
    assert fay["status"] == "fast" and fay["minutes_lost_per_week"] == 0.0 and fay["flag_kind"] == "fast"
    assert flags[("fast", "fay")].minutes_lost_per_week == 0.0
    systemic = flags[("systemic", "")]
    assert set(systemic.managers) == {"bea", "carl"}
    for member in ("bea", "carl"):  # covered by the team's flag, not one of their own
        assert (row[member]["flag_id"], row[member]["flag_kind"]) == (systemic.flag_id, "systemic")
    assert systemic.minutes_lost_per_week == pytest.approx(
        row["bea"]["minutes_lost_per_week"] + row["carl"]["minutes_lost_per_week"], abs=0.01)
    # one definition: the time lost of the drawdowns is the time lost of the slow pairs
    assert sum(f.minutes_lost_per_week for f in flags.values()) == pytest.approx(
        sum(r["minutes_lost_per_week"] or 0.0 for r in row.values()), abs=0.05)
    assert row["s-0"]["peers"]["of"] == 4 and row["s-0"]["minutes_lost_per_week"] == 0.0


def _case_mix_site(client: storage.Client, site: sites.Site, settings: Settings) -> None:
    """North on the offer step for 28 days: six managers with 10% VIP clients, m-mix with 70%, all of the
    same skill; a VIP session takes 60% longer. Each session's segment is on its start event."""
    from collector.events import check_events, parse_batch

    teams.add_team(client, site.name, "north", actor="test")
    managers = ["m-mix", *(f"m-{i}" for i in range(6))]
    teams.assign(client, site.name, "north", managers, actor="test")
    band_versions.add_version(client, site.name, "offer", "", 100_000, 200_000, 400_000, TODAY - timedelta(days=60),
                              actor="test", reason="test")
    rng = np.random.default_rng(7)
    visits, starts = [], []
    for manager in managers:
        share = 0.7 if manager == "m-mix" else 0.1
        for d in range(28):
            day = TODAY - timedelta(days=d)
            for k in range(3):
                vip = bool(rng.random() < share)
                session = f"{manager}-{d}-{k}"
                active = round(200_000 * (1.6 if vip else 1.0) * float(np.exp(rng.normal(0, 0.25))))
                visits.append(visit(manager, session, "offer", day, active))
                at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
                starts.append([site.name, str(uuid.uuid4()), session, "start", manager, "c", "sales", at, "",
                               {"segment": "vip" if vip else "regular"}, "t"])
    visits.append(visit("m-1", "m-1-1-0", "offer", TODAY, 30_000))  # over two days: summed, dated by the first
    checked = check_events(parse_batch(json.dumps({"site": "k", "events": visits}).encode()), site=site.name,
                           settings=settings)
    storage.insert_visits(client, b"\n".join(checked.visits))
    client.insert("session_events", starts, column_names=["site", "event_id", "session_id", "action", "manager",
                                                          "customer", "process", "at", "outcome", "attributes",
                                                          "tracker"])


def test_a_site_that_declares_attributes_compares_like_with_like(client: storage.Client, site: sites.Site,
                                                                settings: Settings) -> None:
    _case_mix_site(client, site, settings)
    window = Window(TODAY - timedelta(days=13), TODAY)
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    plain = {r["manager"]: r for r in analysis_run.stats_rows(client, analysis_run.run_site(
        client, site.name, settings, window)) if r["step"] == "offer"}
    assert plain["m-mix"]["status"] == "slow"  # the VIP share alone makes the median long
    assert "case_mix" not in plain["m-mix"]  # a site without attributes: its rows as they were

    declared = EXAMPLE.read_text() + '\n[attributes]\nsegment = ["vip", "regular"]\n'
    processes.load(client, processes.parse(declared, site.name), actor="test")
    run = analysis_run.run_site(client, site.name, settings, window)
    rows = {r["manager"]: r for r in analysis_run.stats_rows(client, run) if r["step"] == "offer"}
    mine = rows["m-mix"]
    assert mine["status"] == "ok"
    assert not [d for d in run.result.drawdowns if d.step == "offer"]
    mix = mine["case_mix"]
    assert mix["method"] == "van_elteren" and mix["main"] == {"segment": "vip"}
    vip = next(s for s in mix["strata"] if s["attributes"] == {"segment": "vip"})
    assert vip["manager_share"] > 0.55 and vip["team_share"] < 0.2
    assert vip["factor"] == pytest.approx(1.6, rel=0.15)
    assert mix["minutes_above_reference_per_week"] > 3 * mix["adjusted_minutes_above_reference_per_week"]
    assert mine["median_ms"] == mix["adjusted_median_ms"] < mix["median_ms"]
    # the same sessions as the plain reader, each with its stratum
    plain_times = {(p.manager, p.step): p for p in storage.session_step_times(
        client, site.name, TODAY - timedelta(days=27), TODAY + timedelta(days=1))}
    stratified = stratified_read.stratified_step_times(client, site.name, TODAY - timedelta(days=27),
                                                    TODAY + timedelta(days=1), "visible", {"segment": ("vip",)})
    assert len(stratified) == len(plain_times)
    assert sum(s.times_ms.size for s in stratified) == 7 * 28 * 3  # the session over two days counts once
    for s in stratified:
        p = plain_times[(s.manager, s.step)]
        assert s.times_ms.tolist() == p.times_ms.tolist() and s.days.tolist() == p.days.tolist()
        assert set(s.strata.tolist()) <= {"vip", ""}  # "regular" is no longer declared here: no value


def test_the_stratified_read_gives_each_session_the_stratum_of_its_start_event(client: storage.Client,
                                                                               site: sites.Site,
                                                                               settings: Settings) -> None:
    _case_mix_site(client, site, settings)
    storage.refresh_session_steps(client, site.name)
    declared = {"segment": ("vip", "regular")}
    since, until = TODAY - timedelta(days=27), TODAY + timedelta(days=1)
    read = stratified_read.stratified_step_times(client, site.name, since, until, "visible", declared)
    # what each session's stratum means, joined by ClickHouse on the session's id (the two-day
    # session's time summed and dated by its first day, as the reader does)
    joined = client.query(
        "SELECT manager, step, min(day), sum(visible_ms), any(m['segment']) FROM session_steps AS s "
        "LEFT JOIN (SELECT session_id, argMin(attributes, at) AS m FROM session_events "
        "WHERE action = 'start' GROUP BY session_id) AS e ON s.session_id = e.session_id "
        "WHERE site = {site:String} GROUP BY manager, step, session_id",
        parameters={"site": site.name}).result_rows
    expected: dict[tuple[str, str], list[tuple[date, int, str]]] = {}
    for manager, step, day, spent, segment in joined:
        expected.setdefault((manager, step), []).append((day, int(spent), segment))
    assert {(r.manager, r.step) for r in read} == set(expected)
    assert "regular" in read[0].keys.tolist() and "vip" in read[0].keys.tolist()
    for r in read:
        got = list(zip(r.days.astype(date).tolist(), r.times_ms.tolist(), r.strata.tolist(), strict=True))
        assert got == sorted(got, key=lambda g: (g[0], g[1]))  # by day, then time
        assert sorted(got) == sorted(expected[(r.manager, r.step)])
    # a session too long to pack pair, day, time and stratum in one number (one of 2^50 ms on
    # another pair): the same read, sorted the other way
    client.command("INSERT INTO session_steps (site, day, manager, step, session_id, visible_ms, active_ms, wall_ms, "
                   "computed_at) SELECT site, day, 'm-long', step, 'long', 1125899906842624, 1, 1, computed_at "
                   "FROM session_steps WHERE site = {site:String} ORDER BY computed_at DESC, day DESC LIMIT 1",
                   parameters={"site": site.name})
    longer = [r for r in stratified_read.stratified_step_times(client, site.name, since, until, "visible", declared)
              if r.manager != "m-long"]
    assert [(r.manager, r.step) for r in longer] == [(r.manager, r.step) for r in read]
    for a, b in zip(longer, read, strict=True):
        assert a.times_ms.tolist() == b.times_ms.tolist() and a.days.tolist() == b.days.tolist()
        mixed = zip(a.times_ms.tolist(), a.strata.tolist(), strict=True)
        assert sorted(mixed) == sorted(zip(b.times_ms.tolist(), b.strata.tolist(), strict=True))


@pytest.mark.parametrize("new_pair", [False, True])  # the kept numbers moved in place, or to a new layout
def test_a_second_read_reads_only_the_changed_days_and_gives_what_a_first_read_gives(
        client: storage.Client, site: sites.Site, settings: Settings, new_pair: bool) -> None:
    from collector.events import check_events, parse_batch

    _case_mix_site(client, site, settings)
    time.sleep(1.1)  # the refresh's watermark stops a second short of now
    storage.refresh_session_steps(client, site.name)
    declared = {"segment": ("vip", "regular")}
    stratified_read.stratified_step_times(client, site.name, TODAY - timedelta(days=27), TODAY + timedelta(days=1),
                                          "visible", declared)
    # today: a new session, and a session of three days ago that goes on (rows on two days now);
    # m-4 erased from a day; and the range a day shorter
    checked = check_events(parse_batch(json.dumps({"site": "k", "events": [
        visit("m-2", "m-2-new", "offer", TODAY, 150_000), visit("m-3", "m-3-3-1", "offer", TODAY, 40_000),
        *([visit("m-00", "m-00-new", "offer", TODAY, 90_000)] if new_pair else [])]}).encode()),
        site=site.name, settings=settings)
    storage.insert_visits(client, b"\n".join(checked.visits))
    time.sleep(1.1)
    assert storage.refresh_session_steps(client, site.name) == 1
    client.command("DELETE FROM session_steps WHERE manager = 'm-4' AND day = {d:Date}",
                   parameters={"d": TODAY - timedelta(days=5)})
    read_days: list[list[date]] = []
    query_np = client.query_np

    def recording(query: str, parameters: dict | None = None, **kw: object) -> object:
        if parameters and "changed" in parameters and "session_key FROM session_steps" in query:
            read_days.append(list(parameters["changed"]))
        return query_np(query, parameters=parameters, **kw)

    since, until = TODAY - timedelta(days=26), TODAY + timedelta(days=1)
    client.query_np = recording  # type: ignore[method-assign]
    try:
        second = stratified_read.stratified_step_times(client, site.name, since, until, "visible", declared)
    finally:
        del client.query_np
    assert read_days and all(set(days) == {TODAY, TODAY - timedelta(days=5)} for days in read_days)
    stratified_read._kept.clear()  # a process that never read before
    first = stratified_read.stratified_step_times(client, site.name, since, until, "visible", declared)
    assert [(r.manager, r.step) for r in second] == [(r.manager, r.step) for r in first]
    for a, b in zip(second, first, strict=True):
        assert a.times_ms.tolist() == b.times_ms.tolist() and a.days.tolist() == b.days.tolist()
        assert a.strata.tolist() == b.strata.tolist()
    (m3,) = [r for r in second if r.manager == "m-3"]
    (m4,) = [r for r in second if r.manager == "m-4"]
    assert np.datetime64(TODAY - timedelta(days=5)) not in m4.days
    summed = client.query("SELECT sum(visible_ms) FROM session_steps FINAL WHERE session_id = 'm-3-3-1'"
                          ).result_rows[0][0]
    assert summed in m3.times_ms[m3.days == np.datetime64(TODAY - timedelta(days=3))].tolist()


def test_a_start_event_that_arrives_after_its_visits_day_was_refreshed_gives_the_session_its_stratum(
        client: storage.Client, site: sites.Site, settings: Settings) -> None:
    _case_mix_site(client, site, settings)
    day = TODAY - timedelta(days=2)
    late = f"m-mix-{(TODAY - day).days}-0"
    # take the session's start event out, as if it had not arrived yet, and refresh its day
    client.command("DELETE FROM session_events WHERE session_id = {s:String}", parameters={"s": late})
    storage.refresh_session_steps(client, site.name)
    declared = {"segment": ("vip", "regular")}
    since, until = TODAY - timedelta(days=27), TODAY + timedelta(days=1)

    def stratum_of_late() -> str:
        kept = client.query("SELECT visible_ms FROM session_steps WHERE session_id = {s:String} "
                            "ORDER BY computed_at DESC LIMIT 1", parameters={"s": late}).result_rows[0][0]
        read = stratified_read.stratified_step_times(client, site.name, since, until, "visible", declared)
        (mine,) = [r for r in read if r.manager == "m-mix"]
        on_the_day = (mine.days == np.datetime64(day)) & (mine.times_ms == kept)
        return str(mine.strata[on_the_day][0])

    assert stratum_of_late() == ""  # no start event: no kind of client
    time.sleep(1.1)  # the refresh's watermark stops a second short of now
    client.insert("session_events", [[site.name, str(uuid.uuid4()), late, "start", "m-mix", "c", "sales",
                                       datetime(day.year, day.month, day.day, 9, tzinfo=UTC), "",
                                       {"segment": "vip"}, "t"]],
                  column_names=["site", "event_id", "session_id", "action", "manager", "customer", "process", "at",
                                "outcome", "attributes", "tracker"])
    from collector.events import check_events, parse_batch  # then one visit of today: a refresh is due

    checked = check_events(parse_batch(json.dumps({"site": "k", "events": [
        visit("m-0", "m-0-new", "offer", TODAY, 100_000)]}).encode()), site=site.name, settings=settings)
    storage.insert_visits(client, b"\n".join(checked.visits))
    time.sleep(1.1)
    assert storage.refresh_session_steps(client, site.name) >= 2  # today, and the late session's day
    assert stratum_of_late() == "vip"


def test_the_upgrade_recomputes_the_preaggregate_of_sites_whose_sessions_have_attributes(
        client: storage.Client, site: sites.Site, settings: Settings) -> None:
    from kernel import migrations

    _case_mix_site(client, site, settings)
    storage.refresh_session_steps(client, site.name)
    client.command("INSERT INTO analysis_state (site, watermark) VALUES ('plain', now64(3))")
    (upgrade,) = [m for m in migrations.discover() if m.version == 27]
    for statement in upgrade.statements():
        client.command(statement)
    marks = dict(client.query("SELECT site, max(watermark) FROM analysis_state FINAL GROUP BY site").result_rows)
    assert site.name not in marks and "plain" in marks  # only the site with attributes starts again
    assert storage.refresh_session_steps(client, site.name) >= 28


def test_a_sessions_stored_attributes_give_its_stratum_under_the_declared_ones() -> None:
    declared = {"segment": ("vip", "regular"), "channel": ("phone", "chat")}
    assert stratified_read.stratum_of_attributes("channel=phone&segment=vip", declared) == "vip|phone"
    assert stratified_read.stratum_of_attributes("segment=regular", declared) == "regular|"
    assert stratified_read.stratum_of_attributes("channel=fax&segment=vip", declared) == "vip|"  # fax: not declared
    assert stratified_read.stratum_of_attributes("region=north", declared) == ""
    assert stratified_read.stratum_of_attributes("", declared) == ""
