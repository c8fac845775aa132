"""Permissions and the lifecycle as pure functions: a table per role, the fold's ordering and races."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from coaching import permissions
from coaching.lifecycle import CoachingEvent, InvalidTransition, apply, fold, fold_all, possible
from coaching.permissions import ActingAs, Operator
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.users import User

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def user(name: str, role: str, teams: tuple[str, ...] = (), manager_id: str = "") -> User:
    return User(name, role, teams, manager_id, "", "en", False, 1)


ADMIN = user("ada", "admin")
DANA = user("dana", "director", ("north",))
SAM = user("sam", "director", ("south",))
TOM = user("tom", "trainer")
TINA = user("tina", "trainer")
MAX = user("max", "manager", ("north",), "m-1")
MIA = user("mia", "manager", ("north",), "m-2")


def assigned(**payload: Any) -> CoachingEvent:
    base = {"site": "crm", "manager": "m-1", "team": "north", "step": "offer", "kind": "mentor_meeting",
            "mentor": "tom", "due": "2026-03-09", "target": {"max_ms": 240000, "within_days": 30}}
    return CoachingEvent(str(uuid.UUID(int=1)), 0, str(uuid.uuid4()), T0, "dana", "assigned", "", {**base, **payload})


def event(seq: int, kind: str, at: datetime, reason: str = "", **payload: Any) -> CoachingEvent:
    return CoachingEvent(str(uuid.UUID(int=1)), seq, str(uuid.uuid4()), at, "tom", kind, reason, payload)


MEETING = apply(None, assigned())
COURSE = apply(None, assigned(kind="course", mentor="", course_id="offer-basics", self_paced=True))
LED = apply(None, assigned(kind="course", course_id="offer-workshop"))

# who may do what: (user, action, assignment) -> allowed
TABLE = [
    (ADMIN, "assign", None, True), (DANA, "assign", None, True), (SAM, "assign", None, False),
    (TOM, "assign", None, False), (MAX, "assign", None, False),
    (DANA, "view", MEETING, True), (SAM, "view", MEETING, False), (TOM, "view", MEETING, True),
    (TINA, "view", MEETING, False), (MAX, "view", MEETING, True), (MIA, "view", MEETING, False),
    (ADMIN, "schedule", MEETING, True), (TOM, "schedule", MEETING, True), (TINA, "schedule", MEETING, False),
    (DANA, "schedule", MEETING, False), (MAX, "schedule", MEETING, False),
    (TOM, "done", MEETING, True), (MAX, "done", MEETING, False), (DANA, "done", MEETING, False),
    (MAX, "done", COURSE, True), (MIA, "done", COURSE, False), (TOM, "done", COURSE, False),
    (DANA, "done", COURSE, False), (TOM, "done", LED, True), (MAX, "done", LED, False),
    (DANA, "cancel", MEETING, True), (SAM, "cancel", MEETING, False), (TOM, "cancel", MEETING, False),
    (MAX, "cancel", COURSE, False), (ADMIN, "cancel", COURSE, True),
    (DANA, "evaluate", MEETING, True), (TOM, "evaluate", MEETING, True), (TINA, "evaluate", MEETING, False),
    (MAX, "evaluate", MEETING, False), (SAM, "evaluate", MEETING, False),
    (DANA, "courses", None, True), (TOM, "courses", None, True), (MAX, "courses", None, False),
    (DANA, "mentors", None, True), (TOM, "mentors", None, False), (ADMIN, "mentors", None, True),
    (DANA, "effectiveness", None, True), (TOM, "effectiveness", None, True), (MAX, "effectiveness", None, False),
]


@pytest.mark.parametrize(("who", "action", "assignment", "allowed"), TABLE)
def test_permission_table(who: User, action: str, assignment: Any, allowed: bool) -> None:
    team = "north" if action == "assign" else None
    assert permissions.can(who, action, assignment, team=team) is allowed
    if not allowed and assignment is not None and not permissions.sees(who, assignment):
        # what one may not see is not there: the answer an unknown id gets, nothing about the coaching
        with pytest.raises(NotFound) as hidden:
            permissions.require(who, action, assignment, team=team)
        assert str(hidden.value) == f"no coaching assignment {assignment.assignment_id}"
    elif not allowed:
        with pytest.raises(Forbidden) as refused:
            permissions.require(who, action, assignment, team=team)
        assert who.name in str(refused.value)  # each refusal names who and why


def test_operators_act_as_admins_and_acting_as_keeps_the_rights_of_the_account() -> None:
    assert permissions.can(Operator("cli:ops"), "cancel", MEETING)
    as_sam = ActingAs.of(SAM, via="cli:ops")
    assert (as_sam.name, as_sam.via) == ("sam", "cli:ops")
    assert not permissions.can(as_sam, "cancel", MEETING)
    disabled = User("dana", "director", ("north",), "", "", "en", True, 1)
    assert permissions.refusal(disabled, "view", MEETING) == "the account dana is disabled"
    assert permissions.visible(TOM, [MEETING, COURSE, LED]) == [MEETING, LED]


def test_fold_applies_events_in_seq_order_and_skips_the_loser_of_a_race() -> None:
    first, second = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    events = [
        assigned(),
        event(1, "scheduled", second, meeting_at="2026-03-04T10:00:00+00:00"),  # loses: same seq, later
        event(1, "scheduled", first, meeting_at="2026-03-03T10:00:00+00:00"),
        event(2, "cancelled", second, reason="left"),
    ]
    state = fold(reversed(events))
    assert state.state == "cancelled" and state.version == 2
    assert state.scheduled_for == datetime(2026, 3, 3, 10, tzinfo=UTC)
    assert [e.event_id for e in state.history] == [events[0].event_id, events[2].event_id, events[3].event_id]
    assert fold_all([events[1]]) == {}  # no assigned event: nothing to fold


def test_apply_refuses_what_the_state_does_not_allow() -> None:
    with pytest.raises(InvalidTransition, match="changed meanwhile"):
        apply(MEETING, event(5, "cancelled", T0, reason="x"))
    with pytest.raises(InvalidTransition, match="exists already"):
        apply(MEETING, assigned())
    with pytest.raises(InvalidInput, match="ISO 8601"):
        apply(MEETING, event(1, "scheduled", T0, meeting_at="tomorrow"))
    with pytest.raises(InvalidTransition, match="only a done assignment is evaluated"):
        apply(MEETING, event(1, "evaluated", T0, verdict="improved"))
    scheduled = apply(MEETING, event(1, "scheduled", T0, meeting_at="2026-03-03T10:00:00Z"))
    done = apply(scheduled, event(2, "done", datetime(2026, 3, 3, 11, tzinfo=UTC)))
    with pytest.raises(InvalidTransition, match="evaluated from 2026-03-18"):
        apply(done, event(3, "evaluated", datetime(2026, 3, 17, 23, tzinfo=UTC), verdict="improved"))
    with pytest.raises(InvalidInput, match="verdict must be one of"):
        apply(done, event(3, "evaluated", datetime(2026, 3, 18, tzinfo=UTC), verdict="great"))
    evaluated = apply(done, event(3, "evaluated", datetime(2026, 3, 18, tzinfo=UTC), verdict="improved",
                                  relative_effect_pct=-18.0, target_met=True))
    assert (evaluated.state, evaluated.verdict, evaluated.relative_effect_pct) == ("evaluated", "improved", -18.0)
    with pytest.raises(InvalidTransition, match="evaluated from 2026-04-03"):
        apply(evaluated, event(4, "followed_up", datetime(2026, 4, 2, tzinfo=UTC), checkpoint=30, verdict="improved"))
    with pytest.raises(InvalidInput, match="30 or 60"):
        apply(evaluated, event(4, "followed_up", datetime(2026, 4, 3, tzinfo=UTC), checkpoint=45, verdict="improved"))
    followed = apply(evaluated, event(4, "followed_up", datetime(2026, 4, 3, tzinfo=UTC), checkpoint=30,
                                      verdict="no_change"))
    with pytest.raises(InvalidTransition, match="recorded already"):
        apply(followed, event(5, "followed_up", datetime(2026, 5, 3, tzinfo=UTC), checkpoint=30, verdict="improved"))
    assert followed.next_checkpoint() == 60 and followed.deadline == date(2026, 4, 1)
    with pytest.raises(InvalidTransition, match="only an open assignment"):
        apply(followed, event(5, "cancelled", datetime(2026, 5, 3, tzinfo=UTC), reason="late"))


#: What an open assignment always allows its manager: acknowledge it (until they have) and ask on it.
FOLLOW = ("acknowledge", "ask")


def test_possible_moves_for_buttons() -> None:
    assert possible(MEETING, T0) == {"schedule", "cancel", *FOLLOW}
    assert possible(COURSE, T0) == {"done", "cancel", *FOLLOW}
    assert possible(LED, T0) == {"schedule", "done", "cancel", *FOLLOW}
    scheduled = apply(MEETING, event(1, "scheduled", T0, meeting_at="2026-03-03T10:00:00Z"))
    assert possible(scheduled, T0) == {"schedule", "cancel", *FOLLOW}
    assert possible(scheduled, datetime(2026, 3, 3, 10, tzinfo=UTC)) == {"schedule", "done", "cancel", *FOLLOW}
    done = apply(scheduled, event(2, "done", datetime(2026, 3, 3, 11, tzinfo=UTC)))
    assert possible(done, datetime(2026, 3, 10, tzinfo=UTC)) == {"cancel", *FOLLOW}
    assert possible(done, datetime(2026, 3, 18, tzinfo=UTC)) == {"cancel", "evaluate", *FOLLOW}
    assert done.as_dict()["deadline"] == "2026-04-01" and done.as_dict()["history"][0]["type"] == "assigned"
