"""Who sees what: the audit log scoped to a director's teams, a manager's peers only as an anonymous
group of at least STEPWATCH_PEER_GROUP_MIN, manager lists scoped, and what one may not see answering
404 (with the words an unknown id gets) before any refusal could describe it."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import coaching
from coaching import assignments, outbox
from coaching.lifecycle import Target
from kernel import band_versions, storage, teams, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import PASSWORD, Org, add_sessions, at, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.dashboard_data import make_flag
from tests.web_helpers import SECRET

TARGET = Target(240_000, 30)


@pytest.fixture
def org(client: storage.Client, site: Any) -> Org:
    return build_org(client, site.name)


async def app_with(aiohttp_client: Any, settings: Settings, **changes: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={
        "secret_key": SECRET, "analysis_interval_s": 0, **changes})))


def meeting(client: storage.Client, settings: Settings, org: Org, manager: str = "m-1", note: str = "") -> Any:
    director = org.dana if manager.startswith("m-") else org.sam
    return coaching.assign(client, settings, director, site=org.site, manager=manager, step="offer",
                           kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=10), target=TARGET,
                           note=note)


# --- 6. the audit log ---------------------------------------------------------------------------------------


@pytest.fixture
def audited(client: storage.Client, settings: Settings, org: Org) -> dict[str, str]:
    """Entries about north (dana's team), about south (sam's), about no team, and dana's own."""
    users.add_user(client, "sid", "manager", PASSWORD, teams=("south",), manager_id="s-1", actor="ada",
                   reason="south account")
    north_flag = make_flag(client, org.site, team="north", manager="m-1", step="offer")
    south_flag = make_flag(client, org.site, team="south", manager="s-1", step="offer")
    from kernel import flag_store

    # a person acknowledges it: the analysis' own notes are shown in words, not as written (drawdowns.history_shown)
    flag_store.change_status(client, north_flag, "acknowledged", actor="ada", reason="north flag reason")
    flag_store.change_status(client, south_flag, "acknowledged", actor="sam", reason="south flag reason")
    north = meeting(client, settings, org, "m-1", note="north coaching note")
    south = meeting(client, settings, org, "s-1", note="south coaching note")
    coaching.cancel(client, settings, org.sam, south.assignment_id, reason="south cancel reason")
    teams.assign(client, org.site, "south", ["s-3"], actor="ada", reason="south joins")
    teams.assign(client, org.site, "north", ["m-5"], actor="ada", reason="north joins")
    for team in ("north", "south", ""):
        band_versions.add_version(client, org.site, "offer", team, 60_000, 120_000, 240_000, today(), actor="ada",
                                  reason=f"band of {team or 'every team'}")
    users.set_language(client, "dana", "en", actor="dana")  # dana's own action
    users.set_password(client, "tina", "another long password", actor="ada", reason="trainer account")
    return {"north_flag": north_flag.flag_id, "south_flag": south_flag.flag_id, "north": north.assignment_id,
            "south": south.assignment_id}


SOUTH_WORDS = ("south flag reason", "south coaching note", "south cancel reason", "south joins", "south account",
               "band of south", "trainer account")


async def test_a_director_reads_only_the_audit_entries_of_their_teams_and_their_own(
        aiohttp_client: Any, settings: Settings, audited: dict[str, str]) -> None:
    api = await app_with(aiohttp_client, settings)
    await login(api, "dana")
    body = await (await api.get("/api/v1/audit")).json()
    seen = {(e["action"], e["object"]) for e in body["entries"]}
    text = str(body["entries"])
    for words in SOUTH_WORDS:
        assert words not in text, words
    for hidden in (("flag.acknowledged", audited["south_flag"]), ("coaching.assigned", audited["south"]),
                   ("coaching.cancelled", audited["south"]), ("team.assign", "crm/s-1"), ("team.assign", "crm/s-3"),
                   ("team.add", "crm/south"), ("band.set", "crm/offer/south"), ("user.add", "sid"),
                   ("user.add", "sam"), ("user.add", "ada"), ("user.passwd", "tina"),
                   ("course.add", "crm/offer-basics"), ("mentor.set", "crm/tom")):
        assert hidden not in seen, hidden
    for shown in (("flag.acknowledged", audited["north_flag"]), ("coaching.assigned", audited["north"]),
                  ("team.assign", "crm/m-1"), ("team.assign", "crm/m-5"), ("team.add", "crm/north"),
                  ("band.set", "crm/offer/north"), ("band.set", "crm/offer"), ("user.add", "max"),
                  ("user.add", "dana"), ("user.language", "dana")):
        assert shown in seen, shown
    assert "north coaching note" in text and "north flag reason" in text

    page = await (await api.get("/audit")).text()
    exported = await (await api.get("/api/v1/audit?format=csv")).text()
    exported_html_path = await (await api.get("/audit?format=csv")).text()
    for words in SOUTH_WORDS:
        assert words not in page and words not in exported and words not in exported_html_path, words
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {(r["action"], r["object"]) for r in rows} == seen
    assert "north flag reason" in page

    # a filter cannot reach around the scope
    assert (await (await api.get(f"/api/v1/audit?object={audited['south']}")).json())["entries"] == []
    assert (await (await api.get("/api/v1/audit?actor=sam")).json())["entries"] == []


async def test_an_admin_reads_every_audit_entry(aiohttp_client: Any, settings: Settings,
                                                audited: dict[str, str]) -> None:
    api = await app_with(aiohttp_client, settings)
    await login(api, "ada")
    text = str((await (await api.get("/api/v1/audit")).json())["entries"])
    for words in (*SOUTH_WORDS, "north coaching note", "north flag reason"):
        assert words in text, words
    await login(api, "sam")  # and the director of south reads south's, not north's
    text = str((await (await api.get("/api/v1/audit")).json())["entries"])
    assert "south cancel reason" in text and "south flag reason" in text and "band of south" in text
    assert "north coaching note" not in text and "north flag reason" not in text and "north joins" not in text


# --- 7. a manager sees their peers only as an anonymous group ----------------------------------------------


@pytest.fixture
def coached(client: storage.Client, settings: Settings, org: Org) -> Any:
    """m-1 coached on offer by tom (a course he leads) 30 days ago; peers of north: m-2, m-3, m-4."""
    first, last = today() - timedelta(days=60), today() - timedelta(days=1)
    change = today() - timedelta(days=25)
    add_sessions(client, org.site, "m-1", first, change - timedelta(days=1), 300, seed=1)
    add_sessions(client, org.site, "m-1", change, last, 210, seed=2)
    for i, peer in enumerate(["m-2", "m-3", "m-4", "s-1"]):
        add_sessions(client, org.site, peer, first, last, 250, seed=10 + i)
    assigned_at = at(today() - timedelta(days=30))
    a = coaching.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer", kind="course",
                        course_id="offer-workshop", mentor="tom", due=assigned_at.date() + timedelta(days=7),
                        target=TARGET, now=assigned_at)
    coaching.mark_done(client, settings, org.tom, a.assignment_id, now=at(today() - timedelta(days=26)))
    return a


@pytest.fixture
def evaluated(client: storage.Client, settings: Settings, org: Org, coached: Any) -> Any:
    """The same, evaluated."""
    evaluation = coaching.evaluate_assignment(client, settings, coached.assignment_id, org.dana)
    assert sorted(evaluation.figures["peers"]) == ["m-2", "m-3", "m-4"]
    return coached


PEER_IDS = ("m-2", "m-3", "m-4", "s-1")


async def test_a_manager_sees_no_peer_and_no_peer_figure_below_the_smallest_group(
        aiohttp_client: Any, settings: Settings, evaluated: Any) -> None:
    api = await app_with(aiohttp_client, settings)  # STEPWATCH_PEER_GROUP_MIN = 5, three peers
    await login(api, "max")
    path = f"/coaching/assignments/{evaluated.assignment_id}"
    response = await api.get("/api/v1" + path)
    raw = await response.text()
    body = await response.json()
    for peer in PEER_IDS:
        assert f'"{peer}"' not in raw, peer
    figures = body["evaluations"][0]["figures"]
    assert "peers" not in figures
    assert (figures["peer_group"], figures["peers_n"]) == ("too_small", None)
    assert figures["peers_pre_median_ms"] is None and figures["peers_post_median_ms"] is None
    assert figures["peers_change_pct"] is None
    assert not [r for r in figures["reasons"] if r.startswith("peers (")]
    assert figures["verdict"] == body["evaluations"][0]["verdict"] and figures["relative_effect_pct"] is not None
    chart = body["before_after"]
    assert chart["peer_group"] == "too_small" and set(chart["peers_ms"]) == {None} and chart["peers_n"] is None
    page = await (await api.get(path)).text()
    assert "too few peers" in page
    for peer in PEER_IDS:
        assert peer not in page
    exported = await (await api.get("/api/v1" + path + "?format=csv")).text()
    for peer in PEER_IDS:
        assert peer not in exported
    mine = await (await api.get("/api/v1/me")).json()
    assert set(mine["coaching"][0]["before_after"]["peers_ms"]) == {None}

    await login(api, "dana")  # the director of north sees each of those peers: by name
    figures = (await (await api.get("/api/v1" + path)).json())["evaluations"][0]["figures"]
    assert figures["peer_group"] == "named" and sorted(figures["peers"]) == ["m-2", "m-3", "m-4"]
    assert figures["peers_change_pct"] is not None


async def test_a_manager_sees_a_large_enough_group_as_one_anonymous_aggregate(
        aiohttp_client: Any, settings: Settings, evaluated: Any) -> None:
    api = await app_with(aiohttp_client, settings, peer_group_min=3)
    await login(api, "max")
    response = await api.get(f"/api/v1/coaching/assignments/{evaluated.assignment_id}")
    raw = await response.text()
    body = await response.json()
    for peer in PEER_IDS:
        assert f'"{peer}"' not in raw, peer
    figures = body["evaluations"][0]["figures"]
    assert "peers" not in figures and (figures["peer_group"], figures["peers_n"]) == ("anonymous", 3)
    assert figures["peers_pre_median_ms"] > 0 and figures["peers_change_pct"] is not None
    chart = body["before_after"]
    assert (chart["peer_group"], chart["peers_n"]) == ("anonymous", 3)
    assert any(v is not None for v in chart["peers_ms"])


async def test_a_trainer_evaluating_is_answered_without_the_peers_names(
        aiohttp_client: Any, settings: Settings, coached: Any) -> None:
    api = await app_with(aiohttp_client, settings)
    token = await login(api, "tom")  # coaches m-1, not the peers
    response = await api.post(f"/api/v1/coaching/assignments/{coached.assignment_id}/evaluate",
                              headers={"X-CSRF-Token": token}, json={})
    raw = await response.text()
    assert response.status == 200, raw
    for peer in PEER_IDS:
        assert f'"{peer}"' not in raw, peer
    assert (await response.json())["evaluation"]["figures"]["peer_group"] == "too_small"


# --- 7. lists of managers show only whom the viewer may see -------------------------------------------------


async def test_the_assign_form_and_the_catalog_list_only_managers_the_viewer_sees(
        aiohttp_client: Any, client: storage.Client, settings: Settings, org: Org) -> None:
    api = await app_with(aiohttp_client, settings)
    await login(api, "dana")
    assert (await (await api.get("/api/v1/coaching/new")).json())["managers"] == ["m-1", "m-2", "m-3", "m-4"]
    assert (await (await api.get("/api/v1/coaching/catalog")).json())["managers"] == ["m-1", "m-2", "m-3", "m-4"]
    form = await (await api.get("/coaching/new")).text()
    assert 'value="m-1"' in form and 'value="s-1"' not in form
    await login(api, "sam")
    assert (await (await api.get("/api/v1/coaching/new")).json())["managers"] == ["s-1", "s-2"]
    await login(api, "tom")  # a trainer: whom they coach, nobody yet
    assert (await (await api.get("/api/v1/coaching/catalog")).json())["managers"] == []
    meeting(client, settings, org, "m-2")
    assert (await (await api.get("/api/v1/coaching/catalog")).json())["managers"] == ["m-2"]
    await login(api, "ada")
    assert len((await (await api.get("/api/v1/coaching/new")).json())["managers"]) == 6


# --- 7. what one may not see answers 404 --------------------------------------------------------------------


async def test_someone_elses_assignment_is_not_found_on_its_page_and_every_action(
        aiohttp_client: Any, client: storage.Client, settings: Settings, org: Org) -> None:
    a = meeting(client, settings, org, "m-1", note="objections handling")
    api = await app_with(aiohttp_client, settings)
    base = f"/coaching/assignments/{a.assignment_id}"
    when = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    for user in ("tina", "sam", "mia"):  # another trainer, the director of another team, another manager
        token = await login(api, user)
        answers = [await api.get("/api/v1" + base), await api.get(base, allow_redirects=False)]
        for action, body in (("schedule", {"meeting_at": when}), ("done", {}), ("cancel", {"reason": "x"}),
                             ("evaluate", {})):
            answers.append(await api.post(f"/api/v1{base}/{action}", headers={"X-CSRF-Token": token}, json=body))
        for response in answers:
            assert response.status == 404, (user, response.url, response.status)
        for response in answers[:1] + answers[2:]:
            error = (await response.json())["error"]
            assert error == f"no coaching assignment {a.assignment_id}", (user, error)
        page = await answers[1].text()
        for words in (r"\btom\b", "north", "objections", r"\bm-1\b"):
            assert not re.search(words, page), (user, words)
    assert coaching.get(client, a.assignment_id).state == "assigned"  # nothing changed


async def test_an_id_prefix_is_resolved_among_what_the_viewer_sees(
        aiohttp_client: Any, client: storage.Client, settings: Settings, org: Org,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two assignments whose ids start alike, one of north and one of south: the prefix names the one
    each director sees, and tells neither that the other exists."""
    made = iter([uuid.UUID(f"abcdef12-0000-4000-8000-00000000000{i}") for i in range(1, 5)])
    monkeypatch.setattr(assignments.uuid, "uuid4", lambda: next(made))
    north = meeting(client, settings, org, "m-1")
    south = meeting(client, settings, org, "s-1")
    monkeypatch.undo()
    api = await app_with(aiohttp_client, settings)
    for user, mine in (("dana", north), ("sam", south)):
        await login(api, user)
        shown = await api.get("/api/v1/coaching/assignments/abcdef12")
        assert shown.status == 200, await shown.text()
        assert (await shown.json())["assignment"]["assignment_id"] == mine.assignment_id
    await login(api, "mia")  # sees neither: the prefix answers as one that matches nothing
    for prefix in ("abcdef12", "fedcba98"):
        response = await api.get(f"/api/v1/coaching/assignments/{prefix}")
        assert response.status == 404 and (await response.json())["error"] == f"no coaching assignment {prefix}"
    await login(api, "ada")  # sees both: the prefix is not enough
    response = await api.get("/api/v1/coaching/assignments/abcdef12")
    assert response.status == 400 and "several" in (await response.json())["error"]


async def test_a_refusal_describes_only_what_the_viewer_sees(
        aiohttp_client: Any, client: storage.Client, settings: Settings, org: Org) -> None:
    a = meeting(client, settings, org, "m-1")
    api = await app_with(aiohttp_client, settings)
    token = await login(api, "dana")  # sees it, may not schedule it: 403, and the reason is about this coaching
    response = await api.post(f"/api/v1/coaching/assignments/{a.assignment_id}/schedule",
                              headers={"X-CSRF-Token": token}, json={"meeting_at": "2099-01-01T10:00"})
    assert response.status == 403 and "tom" in (await response.json())["error"]
    token = await login(api, "sam")  # assigning a manager of another team: not found, the team not named
    response = await api.post("/api/v1/coaching/assign", headers={"X-CSRF-Token": token}, json={
        "site": org.site, "manager": "m-2", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
        "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": 4, "within_days": 21})
    error = (await response.json())["error"]
    assert response.status == 404 and "north" not in error


async def test_a_flag_of_another_team_is_not_found_from_the_assign_form_or_the_assignment(
        aiohttp_client: Any, client: storage.Client, settings: Settings, org: Org) -> None:
    south_flag = make_flag(client, org.site, team="south", manager="s-1", step="offer")
    api = await app_with(aiohttp_client, settings)
    token = await login(api, "dana")
    response = await api.get(f"/api/v1/coaching/new?flag={south_flag.flag_id}")
    error = (await response.json())["error"]
    assert response.status == 404 and error == f"no flag {south_flag.flag_id}"
    response = await api.post("/api/v1/coaching/assign", headers={"X-CSRF-Token": token}, json={
        "site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
        "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": 4, "within_days": 21,
        "flag_id": south_flag.flag_id})
    error = (await response.json())["error"]
    assert response.status == 404 and "s-1" not in error and "south" not in error


async def test_failed_notifications_of_another_team_are_neither_listed_nor_retried(
        aiohttp_client: Any, client: storage.Client, settings: Settings, org: Org) -> None:
    hooked = settings.model_copy(update={"webhook_url": "http://127.0.0.1:9/hook"})
    north = meeting(client, hooked, org, "m-1")
    south = meeting(client, hooked, org, "s-1")

    def refuse(url: str, body: bytes, headers: dict[str, str]) -> None:
        raise RuntimeError("down")

    now = datetime.now(UTC)
    for _ in range(outbox.MAX_ATTEMPTS):
        now += timedelta(hours=7)
        outbox.deliver_due(client, hooked, refuse, now=now)
    failed = {m.object: m.message_id for m in outbox.messages(client, site=org.site, status="failed")}
    assert set(failed) == {north.assignment_id, south.assignment_id}
    api = await app_with(aiohttp_client, settings)
    token = await login(api, "dana")
    board = await (await api.get("/api/v1/coaching")).json()
    assert [m["object"] for m in board["failed_notifications"]] == [north.assignment_id]
    refused = await api.post(f"/api/v1/coaching/notifications/{failed[south.assignment_id]}/retry",
                             headers={"X-CSRF-Token": token}, json={})
    assert refused.status == 404
    retried = await api.post(f"/api/v1/coaching/notifications/{failed[north.assignment_id]}/retry",
                             headers={"X-CSRF-Token": token}, json={})
    assert retried.status == 200
