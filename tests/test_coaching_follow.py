"""Coaching the manager can follow: the coached manager acknowledges an assignment and asks questions
on it; its trainer or director answers. The rules (lifecycle), who may (permissions), and the pages
and their JSON twins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import coaching
from coaching import assignments, lifecycle, permissions
from coaching.lifecycle import CoachingEvent, InvalidTransition
from kernel import audit, storage
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import assign_meeting, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.web_helpers import SECRET


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    return build_org(client, site.name)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


# --- the rules, pure --------------------------------------------------------------------------


T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _event(seq: int, kind: str, payload: dict[str, Any] | None = None, *, actor: str = "max", minutes: int = 0,
           event_id: str | None = None) -> CoachingEvent:
    return CoachingEvent("00000000-0000-0000-0000-000000000001", seq, event_id or f"e{seq}",
                         T0 + timedelta(minutes=minutes), actor, kind, "", payload or {})


ASSIGNED = _event(0, "assigned", {"site": "s", "manager": "m-1", "team": "north", "step": "offer",
                                  "kind": "mentor_meeting", "mentor": "tom", "due": "2026-11-10",
                                  "target": {"max_ms": 240000, "within_days": 30}}, actor="dana")


def test_acknowledging_records_who_and_when_once_and_changes_no_state() -> None:
    a = lifecycle.fold([ASSIGNED, _event(1, "acknowledged", minutes=5)])
    assert a.state == "assigned" and a.acknowledged_at == T0 + timedelta(minutes=5) and a.acknowledged_by == "max"
    assert "acknowledge" not in lifecycle.possible(a, T0 + timedelta(minutes=6))
    with pytest.raises(InvalidTransition, match="acknowledged already"):
        lifecycle.apply(a, _event(2, "acknowledged", minutes=7))


def test_a_cancelled_assignment_is_not_acknowledged() -> None:
    cancelled = CoachingEvent(ASSIGNED.assignment_id, 1, "c", T0, "dana", "cancelled", "left", {})
    a = lifecycle.fold([ASSIGNED, cancelled])
    assert "acknowledge" not in lifecycle.possible(a, T0)
    with pytest.raises(InvalidTransition, match="open assignment"):
        lifecycle.apply(a, _event(2, "acknowledged"))


def test_questions_and_answers_keep_their_order_and_count_what_waits() -> None:
    a = lifecycle.fold([ASSIGNED, _event(1, "asked", {"text": " Which calls? "}, event_id="q1"),
                        _event(2, "asked", {"text": "And when?"}, event_id="q2", minutes=1),
                        _event(3, "answered", {"question_id": "q1", "text": "The ones on Monday"}, actor="tom",
                               minutes=2)])
    assert [q.text for q in a.questions] == ["Which calls?", "And when?"]
    assert a.questions[0].answers[0].by == "tom" and a.unanswered == 1 and a.state == "assigned"
    assert a.as_dict()["questions"][0]["answers"][0]["text"] == "The ones on Monday"
    assert a.as_dict()["unanswered"] == 1


@pytest.mark.parametrize(("kind", "payload", "field"), [
    ("asked", {"text": "  "}, "text"), ("asked", {"text": "x" * 2001}, "text"),
    ("answered", {"question_id": "nope", "text": "hi"}, "question_id"),
])
def test_bad_questions_and_answers_name_their_field(kind: str, payload: dict[str, Any], field: str) -> None:
    a = lifecycle.fold([ASSIGNED])
    with pytest.raises(InvalidInput) as caught:
        lifecycle.apply(a, _event(1, kind, payload))
    assert caught.value.field == field


def test_only_the_coached_manager_acknowledges_and_asks_and_the_others_who_see_it_answer(org: Any) -> None:
    a = lifecycle.fold([ASSIGNED])
    for action in ("acknowledge", "ask"):
        assert permissions.can(org.max, action, a)
        for other in (org.dana, org.tom, org.admin):
            assert not permissions.can(other, action, a), (other.name, action)
        assert "sees only their own" in str(permissions.refusal(org.mia, action, a))
    assert permissions.can(org.tom, "answer", a) and permissions.can(org.dana, "answer", a)
    assert permissions.can(org.admin, "answer", a) and not permissions.can(org.max, "answer", a)
    assert not permissions.can(org.tina, "answer", a)  # not her assignment: she does not see it


# --- the commands, stored and audited ---------------------------------------------------------


def test_the_manager_acknowledges_and_asks_the_trainer_answers_all_audited(
        client: storage.Client, settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    acked = assignments.acknowledge(client, settings, org.max, a.assignment_id)
    assert acked.acknowledged_by == "max" and acked.state == "assigned"
    asked = assignments.ask(client, settings, org.max, a.assignment_id, "Which calls should I bring?")
    question = asked.questions[0]
    answered = assignments.answer(client, settings, org.tom, a.assignment_id, question.question_id, "Two offers")
    assert answered.questions[0].answers[0].text == "Two offers"
    stored = coaching.get(client, a.assignment_id)
    assert stored.acknowledged_at is not None and stored.unanswered == 0 and stored.version == 3
    actions = {(e.action, e.actor) for e in audit.entries(client, obj=a.assignment_id)}
    assert {("coaching.acknowledged", "max"), ("coaching.asked", "max"), ("coaching.answered", "tom")} <= actions
    # the lifecycle continues after them: the trainer schedules as before
    moved = coaching.schedule(client, settings, org.tom, a.assignment_id,
                              datetime.combine(today() + timedelta(days=2), datetime.min.time(), UTC))
    assert moved.state == "scheduled" and moved.acknowledged_at == stored.acknowledged_at


def test_someone_else_cannot_acknowledge_or_ask(client: storage.Client, settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    with pytest.raises(Forbidden):
        assignments.acknowledge(client, settings, org.dana, a.assignment_id)
    with pytest.raises(Forbidden):
        assignments.ask(client, settings, org.tom, a.assignment_id, "on his behalf")
    with pytest.raises(NotFound):
        assignments.acknowledge(client, settings, org.mia, a.assignment_id)
    asked = assignments.ask(client, settings, org.max, a.assignment_id, "?")
    with pytest.raises(Forbidden):
        assignments.answer(client, settings, org.max, a.assignment_id, asked.questions[0].question_id, "myself")
    assert coaching.get(client, a.assignment_id).version == 1  # only the question was written


# --- the pages --------------------------------------------------------------------------------


async def test_the_manager_opens_their_assignment_acknowledges_and_asks_through_the_forms(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    token = await login(api, "max")
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert "/acknowledge" in page and "/ask" in page and "not acknowledged yet" in page
    assert "/cancel" not in page and "/schedule" not in page and "/answer" not in page  # read-only otherwise
    assert "cannot" not in page  # no list of what they may not do
    response = await api.post(f"/coaching/assignments/{a.assignment_id}/acknowledge", data={"csrf": token},
                              allow_redirects=False)
    assert response.status == 303
    response = await api.post(f"/coaching/assignments/{a.assignment_id}/ask",
                              data={"csrf": token, "text": "Which calls should I bring?"}, allow_redirects=False)
    assert response.status == 303
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert "acknowledged by the manager" in page and "Which calls should I bring?" in page
    assert "waiting for an answer" in page and "/acknowledge" not in page
    body = await (await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")).json()
    assert body["assignment"]["acknowledged_by"] == "max" and body["assignment"]["unanswered"] == 1
    assert "acknowledge" not in body["actions"] and "ask" in body["actions"]


async def test_the_trainer_sees_the_question_on_the_page_and_the_board_and_answers(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = assign_meeting(client, settings, org)
    assignments.acknowledge(client, settings, org.max, a.assignment_id)
    q = assignments.ask(client, settings, org.max, a.assignment_id, "Which calls?").questions[0]
    token = await login(api, "tom")
    board = await api.get("/api/v1/coaching")
    row = (await board.json())["assignments"][0]
    assert row["unanswered"] == 1 and row["acknowledged_at"]
    board_html = await (await api.get("/coaching")).text()
    assert "1 unanswered" in board_html and "acknowledged by the manager" in board_html
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert "Which calls?" in page and f'value="{q.question_id}"' in page and "/acknowledge" not in page
    assert "cannot ask" not in page and "cannot acknowledge" not in page  # the manager's own, not listed as refused
    response = await api.post(f"/coaching/assignments/{a.assignment_id}/answer",
                              data={"csrf": token, "question_id": q.question_id, "text": "Bring two offers"},
                              allow_redirects=False)
    assert response.status == 303
    await login(api, "max")
    mine = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert "Bring two offers" in mine and "tom answered" in mine


@pytest.mark.parametrize(("user", "path", "body", "status", "field"), [
    ("max", "ask", {"text": ""}, 400, "text"),
    ("max", "ask", {"text": "x" * 2001}, 400, "text"),
    ("tom", "answer", {"text": "hi"}, 400, "question_id"),
    ("tom", "answer", {"question_id": "00000000-0000-0000-0000-0000000000aa", "text": "hi"}, 400, "question_id"),
    ("tom", "acknowledge", {}, 403, None),
    ("dana", "ask", {"text": "for him"}, 403, None),
    ("max", "answer", {"question_id": "00000000-0000-0000-0000-0000000000aa", "text": "hi"}, 403, None),
    ("mia", "acknowledge", {}, 404, None),
    ("tina", "ask", {"text": "?"}, 404, None),
])
async def test_refusals_through_the_api(api: Any, client: storage.Client, settings: Settings, org: Any, user: str,
                                        path: str, body: dict[str, Any], status: int, field: str | None) -> None:
    a = assign_meeting(client, settings, org)
    token = await login(api, user)
    response = await api.post(f"/api/v1/coaching/assignments/{a.assignment_id}/{path}",
                              headers={"X-CSRF-Token": token}, json=body)
    answer = await response.json()
    assert response.status == status, answer
    if field:
        assert answer.get("field") == field
    assert coaching.get(client, a.assignment_id).version == 0


async def test_acknowledging_twice_is_a_conflict(api: Any, client: storage.Client, settings: Settings,
                                                 org: Any) -> None:
    a = assign_meeting(client, settings, org)
    token = await login(api, "max")
    url = f"/api/v1/coaching/assignments/{a.assignment_id}/acknowledge"
    assert (await api.post(url, headers={"X-CSRF-Token": token}, json={})).status == 200
    again = await api.post(url, headers={"X-CSRF-Token": token}, json={})
    assert again.status == 409 and "already" in (await again.json())["error"]


def test_the_webhook_says_who_acknowledged_asked_and_answered(client: storage.Client, settings: Settings,
                                                               org: Any) -> None:
    a = assign_meeting(client, settings, org)
    asked = assignments.ask(client, settings, org.max, a.assignment_id, "Which calls?")
    answered = assignments.answer(client, settings, org.tom, a.assignment_id, asked.questions[0].question_id, "Two")
    texts = [assignments.notification(answered, e)["text"] for e in answered.history[1:]]
    assert texts == ["max asked about a meeting with tom on step offer: Which calls?",
                     "tom answered a question of m-1 (team north) on step offer about a meeting with tom: Two"]
    acked = assignments.acknowledge(client, settings, org.max, a.assignment_id)
    assert assignments.notification(acked, acked.history[-1])["text"] == (
        "max acknowledged a meeting with tom on step offer.")


async def test_the_board_leads_the_trainer_to_the_questions_waiting(api: Any, client: storage.Client,
                                                                   settings: Settings, org: Any) -> None:
    asked = assign_meeting(client, settings, org)
    quiet = assign_meeting(client, settings, org, manager="m-2")
    assignments.ask(client, settings, org.max, asked.assignment_id, "Which calls?")
    await login(api, "tom")
    board = await (await api.get("/coaching")).text()
    assert "Questions from managers waiting for an answer: 1." in board and 'href="/coaching?waiting=1' in board
    every = await (await api.get("/api/v1/coaching")).json()
    assert every["questions_waiting"] == 1 and len(every["assignments"]) == 2
    waiting = await (await api.get("/api/v1/coaching?waiting=1")).json()
    assert [r["assignment_id"] for r in waiting["assignments"]] == [asked.assignment_id]
    assert quiet.assignment_id not in await (await api.get("/coaching?waiting=1")).text()
    await login(api, "max")  # the manager asked: the board does not tell them to answer
    assert (await (await api.get("/api/v1/coaching")).json())["questions_waiting"] == 0
