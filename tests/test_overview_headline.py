"""The overview's headline: hours a week lost on the active drawdowns (the same sum as the drawdowns the
drawdowns page lists for the viewer), a week earlier, new and resolved this week, coaching under way
and what it saved, and money only when the site has a cost per hour."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coaching import _store
from coaching.lifecycle import CoachingEvent
from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import TODAY, load_process, make_flag, stats_row, store_pair_stats
from tests.web_helpers import SECRET, login, make_accounts


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


async def _json(api: Any, path: str) -> dict[str, Any]:
    response = await api.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


async def _as(api: Any, name: str) -> None:
    api.session.cookie_jar.clear()
    await login(api, name)


def _flags(client: storage.Client) -> None:
    """North (m1, m2): a slow flag, a team-wide one, a fast one; south (m3): a slow one in coaching; and
    flags no longer active, one resolved today and one opened weeks ago and dismissed."""
    make_flag(client, "crm", manager="m1", minutes_lost=60.0)
    make_flag(client, "crm", kind="systemic", manager="", managers=("m1", "m2"), step="needs", minutes_lost=30.0,
              opened_days_ago=10)
    make_flag(client, "crm", kind="fast", manager="m2", minutes_lost=0.0, median_ms=20_000)
    make_flag(client, "crm", manager="m3", team="south", minutes_lost=45.0, status="coaching", opened_days_ago=20)
    make_flag(client, "crm", manager="m2", step="needs", minutes_lost=100.0, status="resolved", opened_days_ago=12)
    make_flag(client, "crm", manager="m1", step="closing", minutes_lost=80.0, status="dismissed",
              opened_days_ago=30)


async def test_hours_lost_are_the_sum_over_the_drawdowns_listed(api: Any, client: storage.Client) -> None:
    _flags(client)
    for name, team, expected in (("ada", "", 135.0), ("ada", "south", 45.0), ("dora", "", 90.0),
                                 ("dora", "north", 90.0)):
        await _as(api, name)
        query = f"?team={team}" if team else ""
        headline = (await _json(api, f"/api/v1/overview{query}"))["headline"]
        listed = (await _json(api, f"/api/v1/drawdowns{query}"))["flags"]
        lost = sum(f["minutes_lost_per_week"] for f in listed if f["kind"] != "fast")
        assert lost == expected, (name, team)
        assert headline["hours_lost_per_week"] == pytest.approx(lost / 60, abs=0.005), (name, team)
        assert headline["drawdowns"] == sum(f["kind"] != "fast" for f in listed)
    await _as(api, "ada")
    by_step = (await _json(api, "/api/v1/overview?step=needs"))["headline"]
    assert by_step["hours_lost_per_week"] == 0.5 and by_step["drawdowns"] == 1  # the team-wide flag alone


async def test_a_fast_flag_adds_nothing_and_is_listed_apart(api: Any, client: storage.Client) -> None:
    make_flag(client, "crm", manager="m1", minutes_lost=60.0)
    await login(api, "ada")
    before = (await _json(api, "/api/v1/overview"))["headline"]
    make_flag(client, "crm", kind="fast", manager="m2", minutes_lost=25.0, median_ms=20_000)
    data = await _json(api, "/api/v1/overview")
    assert data["headline"]["hours_lost_per_week"] == before["hours_lost_per_week"] == 1.0
    assert data["headline"]["drawdowns"] == 1 and data["headline"]["possible_skipped_work"] == 1
    assert [d["kind"] for d in data["top_drawdowns"]] == ["slow"]
    assert [d["manager"] for d in data["possible_skipped_work"]] == ["m2"]
    html = await (await api.get("/overview")).text()
    assert "1.0\xa0h</strong>" in html and "a week lost on the open drawdowns (1)" in html


async def test_new_and_resolved_this_week(api: Any, client: storage.Client) -> None:
    _flags(client)
    await login(api, "ada")
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    # Opened in the last 7 days: m1's slow flag (3 days ago); the fast one is not a drawdown.
    assert headline["new_this_week"] == 1
    assert headline["resolved_this_week"] == 1  # m2's, resolved now
    await _as(api, "dora")
    assert (await _json(api, "/api/v1/overview?step=offer"))["headline"]["resolved_this_week"] == 0


def _run(client: storage.Client, until_days_ago: int, lost: dict[tuple[str, str], tuple[str, float]]) -> None:
    """A stored analysis run whose window ends `until_days_ago`, with each pair's status and minutes."""
    rows = []
    for (manager, step), (status, minutes) in lost.items():
        row = stats_row("crm", "south" if manager == "m3" else "north", manager, step, 300_000)
        rows.append({**row, "status": status, "minutes_lost_per_week": minutes})
    until = TODAY - timedelta(days=until_days_ago)
    store_pair_stats(client, "crm", rows, until - timedelta(days=27), until)


async def test_a_week_earlier_is_the_latest_run_ending_seven_days_before(api: Any, client: storage.Client) -> None:
    await login(api, "ada")
    _run(client, 0, {("m1", "offer"): ("slow", 50.0)})
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    assert headline["hours_lost_per_week_previous"] is None
    assert "No analysis a week earlier to compare with." in await (await api.get("/overview")).text()

    _run(client, 14, {("m1", "offer"): ("slow", 600.0)})  # older than the one a week earlier
    _run(client, 7, {("m1", "offer"): ("slow", 40.0), ("m2", "offer"): ("ok", 25.0), ("m3", "offer"): ("slow", 20.0),
                     ("m2", "needs"): ("watch", 15.0)})
    _run(client, 3, {("m1", "offer"): ("slow", 900.0)})  # ended fewer than 7 days before the latest
    _run(client, 0, {("m1", "offer"): ("slow", 50.0)})
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    assert headline["hours_lost_per_week_previous"] == 1.0  # 40 + 20 slow minutes; ok and watch count 0
    assert headline["previous_until"] == (TODAY - timedelta(days=7)).isoformat()
    html = await (await api.get("/overview")).text()
    assert "A week earlier: 1.0\xa0h" in html
    assert (await _json(api, "/api/v1/overview?team=south"))["headline"]["hours_lost_per_week_previous"] == 0.33
    assert (await _json(api, "/api/v1/overview?step=needs"))["headline"]["hours_lost_per_week_previous"] == 0.0
    await _as(api, "dora")  # north only
    assert (await _json(api, "/api/v1/overview"))["headline"]["hours_lost_per_week_previous"] == 0.67


def _assignment(client: storage.Client, manager: str, *, types: tuple[str, ...] = (),
                saved: tuple[float, ...] = ()) -> None:
    """An assignment's events as the coaching store keeps them, and its evaluations' minutes saved."""
    assignment = str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(days=20)
    payload = {"site": "crm", "manager": manager, "step": "offer", "kind": "course", "course_id": "c"}
    for seq, kind in enumerate(("assigned", *types)):
        _store.insert_event(client, "crm", CoachingEvent(assignment, seq, str(uuid.uuid4()), at + timedelta(days=seq),
                                                         "test", kind, "", payload if kind == "assigned" else {}))
    for checkpoint, minutes in zip((0, 30, 60), saved, strict=False):
        client.insert("coaching_evaluations", [["crm", assignment, checkpoint, at, TODAY, TODAY, TODAY, TODAY,
                                                "improved", None, 10, 10, 1.0, 1.0, 0.0, 0.0, minutes,
                                                json.dumps({}), 1]],
                      column_names=["site", "assignment_id", "checkpoint", "evaluated_at", "pre_since", "pre_until",
                                    "post_since", "post_until", "verdict", "target_met", "pre_n", "post_n",
                                    "pre_median_ms", "post_median_ms", "change_pct", "relative_effect_pct",
                                    "minutes_saved_per_week", "figures", "version"])


async def test_coaching_under_way_and_the_time_it_saved(api: Any, client: storage.Client) -> None:
    _assignment(client, "m1")  # assigned
    _assignment(client, "m2", types=("done",))
    _assignment(client, "m3", types=("done",))
    _assignment(client, "m1", types=("done", "evaluated", "followed_up"), saved=(30.0, 90.0))  # the latest: 90
    _assignment(client, "m2", types=("done", "evaluated"), saved=(-12.0,))  # lost time
    _assignment(client, "m1", types=("cancelled",))
    await login(api, "ada")
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    assert headline["coaching_active"] == 3 and headline["coaching_evaluated"] == 2
    assert headline["hours_saved_per_week"] == pytest.approx((90 - 12) / 60, abs=0.005)
    await _as(api, "dora")  # north: m1 and m2
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    assert headline["coaching_active"] == 2
    assert (await _json(api, "/api/v1/overview?step=needs"))["headline"]["coaching_active"] == 0


async def test_money_only_when_the_site_has_a_cost_per_hour(api: Any, client: storage.Client) -> None:
    make_flag(client, "crm", manager="m1", minutes_lost=90.0)
    await login(api, "ada")
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    assert headline["cost_per_hour"] is None and headline["cost_lost_per_week"] is None
    html = await (await api.get("/overview")).text()
    assert "an hour" not in html and "€" not in html
    if not hasattr(sites, "set_cost"):
        pytest.skip("kernel.sites has no cost per hour yet")
    sites.set_cost(client, "crm", 40.0, "EUR", actor="test")
    headline = (await _json(api, "/api/v1/overview"))["headline"]
    assert headline["cost_per_hour"] == 40.0 and headline["currency"] == "EUR"
    assert headline["cost_lost_per_week"] == 60.0  # 1.5 h x 40
    html = await (await api.get("/overview")).text()
    assert "About €60 a week, at €40 an hour." in html
