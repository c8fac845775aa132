"""Coaching's refusals and form errors are raised with a code and worded in the reader's language: on the
page, in the form's message and in the JSON `error`, with the JSON keeping the machine-readable `code`."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

import coaching
from coaching import permissions
from coaching.lifecycle import Target
from kernel import storage, users
from kernel.errors import Forbidden
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import build_org, sign_in, today
from tests.web_helpers import SECRET

ENGLISH_REFUSALS = ("cannot do that", "(director)", "does not lead team")
ENGLISH_FORM = "a mentor meeting names the mentor, and no course"


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    return build_org(client, site.name)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


def a_meeting(client: storage.Client, settings: Settings, org: Any) -> Any:
    return coaching.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer",
                           kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=10),
                           target=Target(240_000, 30))


def test_a_refusal_carries_its_code_beside_the_english(org: Any) -> None:
    with pytest.raises(Forbidden) as raised:
        permissions.require(org.admin.__class__(**{**org.dana.__dict__, "disabled": True}), "courses")
    assert raised.value.code == "refusal_disabled" and raised.value.values == {"name": "dana"}
    assert str(raised.value) == "the account dana is disabled"  # the CLI and the logs keep the sentence


@pytest.mark.parametrize("language, words", [
    ("ru", ("Назначить встречу: Встречу назначает только тренер tom.",)),
    ("en", ("Schedule the meeting: Only the trainer tom schedules the meeting.",)),
])
async def test_refused_actions_are_said_in_the_readers_language(
        api: Any, client: storage.Client, settings: Settings, org: Any, language: str, words: tuple[str, ...]) -> None:
    a = a_meeting(client, settings, org)
    users.set_language(client, "dana", language, actor="test")
    await sign_in(api, "dana")
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    for said in words:
        assert said in page
    for english in ENGLISH_REFUSALS:
        assert english not in page
    data = await (await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")).json()
    assert data["refused_codes"]["schedule"] == "refusal_schedule_trainer"
    assert "schedules the meeting" in data["refused"]["schedule"]  # the stored sentence stays for programs


@pytest.mark.parametrize("language, words", [
    ("ru", ("Перенести встречу: Встречу назначает только тренер tom.",)),
    ("en", ("Move the meeting: Only the trainer tom schedules the meeting.",)),
])
async def test_a_meeting_already_set_is_moved_not_scheduled(
        api: Any, client: storage.Client, settings: Settings, org: Any, language: str, words: tuple[str, ...]) -> None:
    """Once the trainer has set the meeting, the director is not offered to schedule it again, and the
    trainer's button moves it."""
    a = a_meeting(client, settings, org)
    coaching.assignments.schedule(client, settings, org.tom, a.assignment_id,
                                  datetime.combine(today() + timedelta(days=3), time(10), UTC))
    for name in ("dana", "tom"):
        users.set_language(client, name, language, actor="test")
    await sign_in(api, "dana")
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert words[0] in page and {"en": "Schedule the meeting", "ru": "Назначить встречу"}[language] not in page
    api.session.cookie_jar.clear()
    await sign_in(api, "tom")
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    assert f'<button type="submit">{ {"en": "Move the meeting", "ru": "Перенести встречу"}[language] }</button>' in page


async def test_a_refused_action_answers_in_the_accounts_language_with_its_code(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = a_meeting(client, settings, org)
    users.set_language(client, "dana", "ru", actor="test")
    token = await sign_in(api, "dana")
    response = await api.post(f"/api/v1/coaching/assignments/{a.assignment_id}/schedule",
                              headers={"X-CSRF-Token": token},
                              json={"meeting_at": f"{today() + timedelta(days=2)}T10:00:00Z"})
    body = await response.json()
    assert response.status == 403 and body["code"] == "refusal_schedule_trainer"
    assert body["error"] == "Встречу назначает только тренер tom."
    form = await api.post(f"/coaching/assignments/{a.assignment_id}/schedule",
                          data={"csrf": token, "meeting_at": f"{today() + timedelta(days=2)}T10:00"})
    html = await form.text()
    assert form.status == 403 and "Встречу назначает только тренер tom." in html
    assert not any(english in html for english in ENGLISH_REFUSALS)


@pytest.mark.parametrize("language, words", [
    ("ru", "Выберите наставника для встречи."),
    ("en", "Choose the mentor for the meeting."),
])
async def test_a_form_error_is_said_next_to_its_field_in_the_readers_language(
        api: Any, client: storage.Client, org: Any, language: str, words: str) -> None:
    users.set_language(client, "dana", language, actor="test")
    token = await sign_in(api, "dana")
    fields = {"site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting", "mentor": "",
              "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": "4", "within_days": "21"}
    response = await api.post("/coaching/assign", data={**fields, "csrf": token, "next": "/coaching/new"},
                              allow_redirects=False)
    assert response.status == 303
    page = await (await api.get("/coaching/new")).text()
    assert 'id="error-mentor"' in page and words in page and ENGLISH_FORM not in page
    answer = await api.post("/api/v1/coaching/assign", headers={"X-CSRF-Token": token},
                            json={**fields, "target_minutes": 4, "within_days": 21})
    body = await answer.json()
    assert answer.status == 400
    assert (body["code"], body["field"], body["error"]) == ("form_meeting_mentor", "mentor", words)


async def test_the_forms_own_checks_are_worded_too(api: Any, client: storage.Client, settings: Settings,
                                                   org: Any) -> None:
    a = a_meeting(client, settings, org)
    users.set_language(client, "dana", "ru", actor="test")
    token = await sign_in(api, "dana")
    page = f"/coaching/assignments/{a.assignment_id}"
    response = await api.post(f"{page}/cancel", data={"csrf": token, "reason": " ", "next": page},
                              allow_redirects=False)
    assert response.status == 303
    html = await (await api.get(page)).text()
    assert "Укажите, почему обучение отменяется." in html and "say why the coaching is cancelled" not in html
    answer = await api.post(f"{page}/cancel".replace("/coaching", "/api/v1/coaching"),
                            headers={"X-CSRF-Token": token}, json={"reason": " "})
    body = await answer.json()
    assert (answer.status, body["code"], body["field"]) == (400, "form_cancel_reason", "reason")


async def test_recent_events_of_an_assignment_are_said_relative_to_now(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    import re

    a = a_meeting(client, settings, org)
    users.set_language(client, "dana", "ru", actor="test")
    await sign_in(api, "dana")
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    # the history's "assigned" just now: relative words, the absolute moment in the tooltip
    assert re.search(r'<time datetime="[^"]+" title="\d+ [а-я]+\.? \d{4}[^"]*">[^<]*назад</time>', page)
