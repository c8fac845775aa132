"""Coaching in the dashboards: board, assign form, transitions, refusals, JSON API, permissions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import coaching
from coaching.lifecycle import Target
from kernel import storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests import coaching_helpers
from tests.coaching_helpers import ROOT, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.web_helpers import SECRET, csrf_of

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    return build_org(client, site.name)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


def assign_meeting(client: storage.Client, settings: Settings, org: Any, manager: str = "m-1") -> Any:
    return coaching_helpers.assign_meeting(client, settings, org, manager, note="from the test")


async def test_director_assigns_from_the_form_and_lands_on_the_assignment(api: Any, org: Any) -> None:
    token = await login(api, "dana")
    form = await (await api.get("/coaching/new?manager=m-1&step=offer")).text()
    assert 'value="m-1" selected' in form and "Offer basics" in form
    response = await api.post("/coaching/assign", data={
        "csrf": token, "site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
        "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": "4", "within_days": "21"},
        allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/coaching/assignments/")
    page = await (await api.get(response.headers["Location"])).text()
    assert "Coaching of m-1 on Offer" in page and "assigned" in page and "<svg" in page
    # the fortnight that prompted it, shaded apart and said: the baseline leaves it out
    assert 'class="trigger"' in page and "the fortnight that prompted the coaching — not compared" in page
    # a phone has a drawing of its own, not the wide one shrunk: both are there, the CSS shows one
    assert page.count('class="chart before-after"') == 2 and 'width="380"' in page
    assert 'class="chart-wide chart-scroll" tabindex="0" role="region"' in page  # scrolled from the keyboard too


async def test_a_refusal_is_shown_next_to_its_field(api: Any, org: Any) -> None:
    token = await login(api, "dana")
    response = await api.post("/coaching/assign", data={
        "csrf": token, "site": org.site, "manager": "m-1", "step": "offer", "kind": "course",
        "course_id": "closing-101",
        "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": "4", "within_days": "21",
        "next": "/coaching/new"}, allow_redirects=False)
    assert response.status == 303
    page = await (await api.get("/coaching/new")).text()
    assert 'class="field-error" id="error-course_id"' in page


async def test_director_outside_the_team_gets_404_that_names_no_team(api: Any, org: Any) -> None:
    await login(api, "sam")  # leads south; m-1 is in north
    token = csrf_of(await (await api.get("/coaching")).text())
    response = await api.post("/api/v1/coaching/assign", headers={"X-CSRF-Token": token}, json={
        "site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
        "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": 4, "within_days": 21})
    error = (await response.json())["error"]
    assert response.status == 404 and "m-1" in error and "north" not in error


async def test_trainer_schedules_and_marks_done_then_the_manager_sees_it(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    token = await login(api, "tom")
    board = await (await api.get("/coaching")).text()
    assert a.assignment_id in board
    past = await api.post(f"/api/v1/coaching/assignments/{a.assignment_id}/schedule", headers={"X-CSRF-Token": token},
                          json={"meeting_at": "2020-01-01T10:00"})
    assert past.status in (400, 409) and "past" in (await past.json())["error"]
    when = (today() + timedelta(days=2)).isoformat() + "T10:00"
    ok = await api.post(f"/coaching/assignments/{a.assignment_id}/schedule", data={"csrf": token, "meeting_at": when},
                        allow_redirects=False)
    assert ok.status == 303
    assert coaching.get(client, a.assignment_id).state == "scheduled"
    early = await api.post(f"/api/v1/coaching/assignments/{a.assignment_id}/done", headers={"X-CSRF-Token": token},
                           json={})
    assert early.status == 409  # done before the meeting
    await login(api, "max")
    mine = await api.get("/api/v1/coaching")
    assert [r["assignment_id"] for r in (await mine.json())["assignments"]] == [a.assignment_id]
    detail = await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")
    body = await detail.json()
    assert body["assignment"]["state"] == "scheduled" and [e["type"] for e in body["assignment"]["history"]] == [
        "assigned", "scheduled"]


async def test_state_shown_is_the_state_folded_from_events(api: Any, client: storage.Client, settings: Settings,
                                                           org: Any) -> None:
    a = assign_meeting(client, settings, org)
    coaching.cancel(client, settings, org.dana, a.assignment_id, reason="manager left")
    await login(api, "ada")
    shown = (await (await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")).json())["assignment"]
    folded = coaching.get(client, a.assignment_id)
    assert shown["state"] == folded.state == "cancelled"
    assert shown["cancel_reason"] == "manager left"


async def test_cancel_needs_a_reason(api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    token = await login(api, "dana")
    response = await api.post(f"/api/v1/coaching/assignments/{a.assignment_id}/cancel",
                              headers={"X-CSRF-Token": token}, json={})
    assert response.status == 400 and (await response.json()).get("field") == "reason"


async def test_csrf_is_required_on_coaching_forms(api: Any, client: storage.Client, settings: Settings,
                                                  org: Any) -> None:
    a = assign_meeting(client, settings, org)
    await login(api, "dana")
    response = await api.post(f"/coaching/assignments/{a.assignment_id}/cancel", data={"reason": "x"},
                              allow_redirects=False)
    assert response.status == 403
    assert coaching.get(client, a.assignment_id).state == "assigned"


@pytest.mark.parametrize(("user", "path", "status"), [
    ("max", "/coaching/new", 403), ("tom", "/coaching/new", 403), ("dana", "/coaching/new", 200),
    ("max", "/coaching/catalog", 403), ("tom", "/coaching/catalog", 200), ("max", "/coaching/effectiveness", 403),
    ("dana", "/coaching/effectiveness", 200), ("tina", "/coaching", 200),
])
async def test_page_permissions(api: Any, user: str, path: str, status: int) -> None:
    await login(api, user)
    assert (await api.get(path, allow_redirects=False)).status == status
    assert (await api.get("/api/v1" + path)).status == status


async def test_other_managers_and_trainers_cannot_open_an_assignment(api: Any, client: storage.Client,
                                                                     settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    for user in ("mia", "tina", "sam"):
        await login(api, user)
        response = await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")
        assert response.status == 404, user
        assert (await response.json())["error"] == f"no coaching assignment {a.assignment_id}"


async def test_trainer_sees_the_manager_page_of_who_they_coach(api: Any, client: storage.Client,
                                                               settings: Settings, org: Any) -> None:
    assign_meeting(client, settings, org)
    await login(api, "tom")
    assert (await api.get("/api/v1/managers/m-1")).status == 200
    assert (await api.get("/api/v1/managers/m-2")).status == 403
    await login(api, "tina")
    assert (await api.get("/api/v1/managers/m-1")).status == 403


async def test_catalog_through_the_api_with_a_token(api: Any, client: storage.Client, org: Any) -> None:
    from kernel import users

    token = users.create_token(client, "dana", "lms", actor="test")
    headers = {"Authorization": f"Bearer {token}"}
    made = await api.post("/api/v1/coaching/courses", headers=headers, json={
        "site": org.site, "title": "Needs analysis", "steps": ["needs"], "expected_minutes": 30, "self_paced": True})
    assert made.status == 200, await made.text()
    listed = await (await api.get("/api/v1/coaching/catalog", headers=headers)).json()
    assert "Needs analysis" in [c["title"] for c in listed["courses"]]
    bad = await api.post("/api/v1/coaching/courses", headers=headers, json={"site": org.site, "title": "x",
                                                                           "steps": ["no-such-step"]})
    assert bad.status in (400, 404)


async def test_names_with_markup_are_escaped(api: Any, client: storage.Client, org: Any) -> None:
    coaching.add_course(client, ROOT, site=org.site, title=SCRIPT, steps=["offer"])
    await login(api, "ada")
    page = await (await api.get("/coaching/catalog")).text()
    assert SCRIPT not in page and "&lt;script&gt;" in page


async def test_failed_notifications_are_visible_and_can_be_retried(api: Any, client: storage.Client,
                                                                    settings: Settings, org: Any) -> None:
    from coaching import outbox

    hooked = settings.model_copy(update={"webhook_url": "http://127.0.0.1:9/hook"})
    assign_meeting(client, hooked, org)
    now = datetime.now(UTC)
    for _ in range(outbox.MAX_ATTEMPTS):  # every attempt fails (nothing listens on port 9) until it gives up
        now += timedelta(hours=7)  # past the longest backoff
        outbox.deliver_due(client, hooked, now=now)
    failed = outbox.messages(client, site=org.site, status="failed")
    assert failed, "the message should have failed for good"
    token = await login(api, "ada")
    board = await (await api.get("/api/v1/coaching")).json()
    assert [m["message_id"] for m in board["failed_notifications"]] == [failed[0].message_id]
    html = await (await api.get("/coaching")).text()
    section = html.split('id="failed-heading"', 1)[1].split("</section>", 1)[0]
    assert failed[0].object not in re.sub(r"<[^>]*>", " ", section)  # the assignment is a link, not its id
    assert "assigned · " in re.sub(r"<[^>]*>", "", section)
    retried = await api.post(f"/api/v1/coaching/notifications/{failed[0].message_id}/retry",
                             headers={"X-CSRF-Token": token}, json={})
    assert retried.status == 200 and (await retried.json())["status"] == "pending"


async def test_the_manager_page_shows_coaching_history_with_a_before_after_chart(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = coaching.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer", kind="course",
                        course_id="offer-basics", due=today() + timedelta(days=3), target=Target(240_000, 30))
    coaching.mark_done(client, settings, org.max, a.assignment_id)  # a self-paced course: the manager marks it
    await login(api, "dana")
    page = await (await api.get("/managers/m-1")).text()
    assert "/coaching/assignments/" + a.assignment_id in page and 'class="chart before-after"' in page
    assert 'class="trigger"' in page  # the fortnight that prompted the coaching, as on the assignment's page
    twin = await (await api.get("/api/v1/managers/m-1")).json()
    assert twin["coaching"][0]["assignment_id"] == a.assignment_id and twin["coaching"][0]["before_after"]
    await login(api, "max")
    mine = await (await api.get("/api/v1/me")).json()
    assert [r["assignment_id"] for r in mine["coaching"]] == [a.assignment_id]


async def test_serve_delivers_the_webhook_of_an_assignment_made_in_the_dashboards(
        aiohttp_client: Any, aiohttp_server: Any, settings: Settings, org: Any, monkeypatch: Any) -> None:
    import asyncio

    from aiohttp import web

    import stepwatch.app

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    monkeypatch.setattr(stepwatch.app, "WEBHOOK_INTERVAL_S", 0.2)
    api = await aiohttp_client(create_app(settings.model_copy(update={
        "secret_key": SECRET, "analysis_interval_s": 0, "webhook_url": str(server.make_url("/hook"))})))
    token = await login(api, "dana")
    response = await api.post("/api/v1/coaching/assign", headers={"X-CSRF-Token": token}, json={
        "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
        "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": 4, "within_days": 30})
    assert response.status == 200, await response.text()
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.1)
    assert received and "m-1" in received[0]["text"]


async def test_the_assignment_page_shows_times_and_states_in_words_not_iso(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    import re

    a = assign_meeting(client, settings, org)
    token = await login(api, "tom")
    when = (today() + timedelta(days=2)).isoformat() + "T10:00"
    await api.post(f"/coaching/assignments/{a.assignment_id}/schedule", data={"csrf": token, "meeting_at": when},
                   allow_redirects=False)
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    main = page.split("<main", 1)[1].split("</main>", 1)[0]
    words = re.sub(r"<[^>]*>", " ", main)  # what a person reads, not the form's machine attributes
    assert not re.search(r"\d{4}-\d{2}-\d{2}", words), re.findall(r".{40}\d{4}-\d{2}-\d{2}.{20}", words)
    assert "<strong>scheduled</strong>" in main and "UTC" in main
    await login(api, "max")
    await api.post("/api/v1/account/language", headers={"X-CSRF-Token": await login(api, "max")},
                   json={"language": "ru"})
    russian = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert "<strong>запланировано</strong>" in russian and "<strong>scheduled</strong>" not in russian


async def test_the_overviews_coaching_under_way_opens_the_board_on_exactly_those(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    """The overview's "Coaching under way" count links to the board filtered to the assignments it
    counts (neither evaluated nor cancelled), so the number on the card is the number of rows."""
    kept = [assign_meeting(client, settings, org, manager) for manager in ("m-1", "m-2")]
    cancelled = assign_meeting(client, settings, org, "m-3")
    coaching.assignments.cancel(client, settings, org.admin, cancelled.assignment_id, reason="not needed")
    await login(api, "ada")
    html = await (await api.get("/overview")).text()
    link = re.search(r'<dt>Coaching under way</dt><dd><a href="([^"]+)">(\d+)</a>', html)
    assert link and link[1].replace("&amp;", "&").startswith("/coaching?site=") and "state=open" in link[1]
    board = await (await api.get("/api/v1" + link[1].replace("&amp;", "&"))).json()
    assert sorted(a["assignment_id"] for a in board["assignments"]) == sorted(a.assignment_id for a in kept)
    assert int(link[2]) == len(kept)
    everything = await (await api.get("/api/v1/coaching")).json()
    assert len(everything["assignments"]) == 3  # the board unfiltered still lists the cancelled one
    page = await (await api.get("/coaching", params={"state": "open"})).text()
    assert '<option value="open" selected>under way (not yet evaluated)</option>' in page
