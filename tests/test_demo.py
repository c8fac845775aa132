"""The demo organisation: realistic, exactly-once, reproducible, built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel import storage, teams
from stepwatch import demo
from tests.helpers import run_cli


def test_demo_history_is_realistic_and_counted_once(client: storage.Client) -> None:
    truth = demo.build(client, seed=3, managers=12, days=21)
    rows = storage.query_rows(client, "SELECT count() AS n, uniqExact(visit_id) AS ids FROM visits")
    assert rows == [{"n": truth.visits, "ids": truth.visits}]  # checkpoints and duplicates count once
    raw = storage.query_rows(client, "SELECT count() AS n FROM step_visits")[0]["n"]
    assert raw >= truth.visits
    assert storage.query_rows(client, "SELECT count() AS n FROM service_sessions")[0]["n"] == truth.sessions
    assert len(teams.members(client, demo.SITE)) == 12
    assert {p.kind for p in truth.planted} == {"slow", "fast", "improvement"}
    weekend = storage.query_rows(client, "SELECT count() AS n FROM visits WHERE toDayOfWeek(started_at) >= 6")
    assert weekend == [{"n": 0}]
    # right-skewed: the mean of a step's times is well above its median
    skew = storage.query_rows(client, "SELECT avg(active_ms + idle_ms) / median(active_ms + idle_ms) AS r FROM visits "
                                      "WHERE step = 'offer'")
    assert skew[0]["r"] > 1.05
    assert demo.exists(client)
    # step discovery is on, and the admin's process page has CRM pages no step matches to show
    from kernel import discovery, processes

    assert discovery.window(client, demo.SITE) is not None
    found, views = discovery.unmatched(client, processes.latest(client, demo.SITE), demo.SITE)
    assert [d.pattern for d in found][:2] == ["/clients/:id/documents", "/clients/:id/calls"] and views > 0


def test_demo_sessions_carry_a_case_mix_with_slower_vips(client: storage.Client) -> None:
    from kernel import processes

    truth = demo.build(client, seed=3, managers=12, days=21)
    process = processes.latest(client, demo.SITE)
    assert process is not None and process.attributes == {"channel": ("phone", "email", "chat"),
                                                          "segment": ("vip", "regular")}
    assert process.value_title("segment", "vip") == "VIP"
    shares = storage.query_rows(client, "SELECT manager, countIf(attributes['segment'] = 'vip') / count() AS vip, "
                                        "countIf(attributes['segment'] = '') AS without FROM service_sessions "
                                        "GROUP BY manager")
    assert all(r["without"] == 0 for r in shares)  # every demo session says its segment
    heavy = {m for m, share in truth.vip_share.items() if share == demo.VIP_HEAVY_SHARE}
    assert heavy and not heavy & {p.manager for p in truth.planted}
    for row in shares:
        assert abs(row["vip"] - truth.vip_share[row["manager"]]) < 0.15, row
    # a VIP takes longer on the consultative steps, as planted
    ratio = storage.query_rows(client, "SELECT medianIf(v.active_ms + v.idle_ms, s.attributes['segment'] = 'vip') / "
                                       "medianIf(v.active_ms + v.idle_ms, s.attributes['segment'] = 'regular') AS r "
                                       "FROM visits AS v JOIN service_sessions AS s USING (site, session_id) "
                                       "WHERE v.step = 'needs'")[0]["r"]
    assert 1.4 < ratio < 1.8
    channels = storage.query_rows(client, "SELECT attributes['channel'] AS c, count() AS n FROM service_sessions "
                                          "GROUP BY c ORDER BY n DESC")
    assert [r["c"] for r in channels] == ["phone", "email", "chat"]


@pytest.mark.slow
def test_demo_command_builds_once_and_writes_the_truth(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}
    truth_file = tmp_path / "truth.json"
    code, out, err = run_cli("demo", "--no-serve", "--managers", "8", "--days", "14", "--truth", str(truth_file),
                             env=env)
    assert code == 0, err
    assert "8 managers" in out
    assert all(f"{role} " in out for role in ("admin", "director", "trainer", "manager"))
    code, listed, _ = run_cli("users", "list", "--json", env=env)
    assert sorted(u["role"] for u in json.loads(listed)) == ["admin", "director", "manager", "trainer"]
    truth = json.loads(truth_file.read_text())
    assert truth["seed"] == 7 and len(truth["managers"]) == 8 and truth["planted"]
    code, out, _ = run_cli("demo", "--no-serve", env=env)
    assert code == 0 and "exists already" in out
    code, out, _ = run_cli("sql", "SELECT count() AS n FROM visits", "--format", "json", env=env)
    assert json.loads(out) == [{"n": truth["visits"]}]


@pytest.mark.slow
def test_the_demo_flags_are_dated_within_7_days_of_the_planted_start(client: storage.Client) -> None:
    """As `stepwatch demo` builds it: slow drawdowns that began before the 4-week look-back are dated,
    fast ones planted from the first day of the history are "at least" since then."""
    from datetime import UTC, datetime, timedelta

    from kernel.settings import Settings
    from stepwatch import analysis_run

    today = datetime.now(UTC).date()
    truth = demo.build(client, today=today)
    demo.set_bands(client, truth, today, 42)
    [run] = analysis_run.analyze(client, Settings(), until=today, only_site=demo.SITE)
    first_day = today - timedelta(days=42)
    checked = 0
    for plant in truth.planted:
        assessment = run.assessment(plant.manager, plant.step)
        if plant.kind not in ("slow", "fast") or assessment is None or assessment.status != plant.kind:
            continue
        since = plant.since
        while since.weekday() >= 5:  # no sessions at weekends
            since += timedelta(days=1)
        assert assessment.start_date is not None, plant
        assert abs((assessment.start_date - since).days) <= 7, (plant, assessment.start_date)
        assert assessment.start_at_least == (plant.since <= first_day), (plant, assessment.start_at_least)
        checked += 1
    assert checked >= 3
    # a slow flag nobody planted is on a manager the demo made slower than most (its skill), not
    # on one who only serves more VIP clients, which the like-for-like comparison accounts for
    planted = {(p.manager, p.step) for p in truth.planted}
    skills = sorted(truth.skill.values())
    unplanted = [d for d in run.result.drawdowns
                 if d.kind == "slow" and d.manager and (d.manager, d.step) not in planted]
    for flag in unplanted:
        assert truth.skill[flag.manager] > skills[len(skills) // 2], (flag.manager, flag.step)
