"""Coaching assignments against the real engine: every transition and every refusal, the state
derived from the events, the audit log, the flag link, the automatic evaluation."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from coaching import _store, assignments, catalog, measure
from coaching.lifecycle import CoachingEvent, InvalidTransition, Target, fold
from kernel import band_versions, flag_store, sites, storage
from kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from kernel.settings import Settings
from tests.coaching_helpers import ROOT, Org, add_sessions, at, build_org, today

TARGET = Target(max_ms=240_000, within_days=30)


@pytest.fixture
def org(client: storage.Client, site: sites.Site) -> Org:
    return build_org(client, site.name)


def course(client: storage.Client, settings: Settings, org: Org, **kw: object) -> assignments.CoachingAssignment:
    args: dict[str, object] = dict(site=org.site, manager="m-1", step="offer", kind="course", course_id="offer-basics",
                                   due=today() + timedelta(days=7), target=TARGET)
    args.update(kw)
    return assignments.assign(client, settings, org.dana, **args)  # type: ignore[arg-type]


def meeting(client: storage.Client, settings: Settings, org: Org, **kw: object) -> assignments.CoachingAssignment:
    return course(client, settings, org, kind="mentor_meeting", course_id="", mentor="tom", **kw)


def audit_actions(client: storage.Client, assignment_id: str) -> list[str]:
    rows = storage.query_rows(client, "SELECT action FROM audit_log WHERE object = {o:String} ORDER BY at",
                              {"o": assignment_id})
    return [r["action"] for r in rows]


def test_a_meeting_goes_assigned_scheduled_done_and_each_step_is_an_event(
        client: storage.Client, settings: Settings, org: Org) -> None:
    a = meeting(client, settings, org, note="focus on objections")
    assert (a.state, a.version, a.assigned_by, a.team, a.mentor) == ("assigned", 0, "dana", "north", "tom")
    meeting_at = at(today() + timedelta(days=2), 10)
    a = assignments.schedule(client, settings, org.tom, a.assignment_id, meeting_at)
    assert (a.state, a.scheduled_for) == ("scheduled", meeting_at)
    moved = meeting_at + timedelta(days=1)
    a = assignments.schedule(client, settings, org.tom, a.assignment_id, moved, reason="manager ill")
    assert a.scheduled_for == moved
    with pytest.raises(InvalidTransition, match="cannot be done before"):
        assignments.mark_done(client, settings, org.tom, a.assignment_id)
    a = assignments.mark_done(client, settings, org.tom, a.assignment_id, note="went well",
                              now=moved + timedelta(hours=1))
    assert (a.state, a.done_by, a.done_on) == ("done", "tom", moved.date())
    assert [e.type for e in a.history] == ["assigned", "scheduled", "scheduled", "done"]
    assert [e.seq for e in a.history] == [0, 1, 2, 3]

    # the state shown is the fold of the stored events, and the list shows the same
    stored = _store.events(client, assignment_id=a.assignment_id)
    assert fold(stored) == a == assignments.get(client, a.assignment_id)
    assert assignments.list_assignments(client, org.site) == [a]
    assert assignments.get(client, a.assignment_id[:8]) == a  # a unique prefix is enough
    assert audit_actions(client, a.assignment_id) == ["coaching.assigned", "coaching.scheduled", "coaching.scheduled",
                                                       "coaching.done"]
    row = storage.query_rows(client, "SELECT actor, reason, details FROM audit_log WHERE action = 'coaching.scheduled' "
                                     "AND reason != ''")[0]
    assert (row["actor"], row["reason"]) == ("tom", "manager ill")
    assert json.loads(row["details"])["state"] == ["scheduled", "scheduled"]


def test_a_self_paced_course_is_done_by_the_manager_and_cancelled_with_a_reason(
        client: storage.Client, settings: Settings, org: Org) -> None:
    a = course(client, settings, org)
    assert a.self_paced and not a.mentor
    with pytest.raises(InvalidTransition, match="self-paced course has no meeting"):
        assignments.schedule(client, settings, ROOT, a.assignment_id, at(today() + timedelta(days=1)))
    done = assignments.mark_done(client, settings, org.max, a.assignment_id)
    assert (done.state, done.done_by) == ("done", "max")
    with pytest.raises(InvalidTransition, match="this one is done"):
        assignments.mark_done(client, settings, org.max, a.assignment_id)
    with pytest.raises(InvalidInput, match="needs a reason"):
        assignments.cancel(client, settings, org.dana, a.assignment_id, reason="  ")
    cancelled = assignments.cancel(client, settings, org.dana, a.assignment_id, reason="left the company")
    assert (cancelled.state, cancelled.cancel_reason, cancelled.cancelled_by) == ("cancelled", "left the company",
                                                                                  "dana")
    with pytest.raises(InvalidTransition, match="only an open assignment"):
        assignments.cancel(client, settings, org.dana, a.assignment_id, reason="again")
    with pytest.raises(InvalidTransition, match="is cancelled"):
        measure.evaluate_assignment(client, settings, a.assignment_id)


def test_inconsistent_data_is_refused(client: storage.Client, settings: Settings, org: Org) -> None:
    a = meeting(client, settings, org)
    now = datetime.now(UTC)
    with pytest.raises(InvalidInput, match="in the past"):
        assignments.schedule(client, settings, org.tom, a.assignment_id, now - timedelta(minutes=5))
    with pytest.raises(InvalidInput, match="after the due date"):
        assignments.schedule(client, settings, org.tom, a.assignment_id, at(a.due + timedelta(days=1)))
    with pytest.raises(InvalidTransition, match="scheduled before it is done"):
        assignments.mark_done(client, settings, org.tom, a.assignment_id)
    with pytest.raises(InvalidTransition, match="evaluated after it is done"):
        measure.evaluate_assignment(client, settings, a.assignment_id)

    refusals: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"due": today() - timedelta(days=1)}, InvalidInput, "in the past"),
        ({"target": Target(240_000, 10)}, InvalidInput, "comes before the coaching due"),
        ({"course_id": "closing-101"}, InvalidInput, "addresses closing, not offer"),
        ({"course_id": "nope"}, NotFound, "no course"),
        ({"step": "nowhere"}, NotFound, "nowhere"),
        ({"manager": "ghost"}, NotFound, "no manager ghost in a team dana leads"),
        ({"kind": "webinar"}, InvalidInput, "kind must be one of"),
        ({"pre_days": 3}, InvalidInput, "7 to 28 days"),
        ({"course_id": "offer-workshop"}, InvalidInput, "led by a trainer: name the trainer"),
        ({"course_id": "offer-basics", "mentor": "tom"}, InvalidInput, "self-paced"),
        ({"kind": "mentor_meeting", "course_id": "", "mentor": "tina"}, InvalidInput, "coaches closing, not offer"),
        ({"kind": "mentor_meeting", "course_id": "", "mentor": "dana"}, InvalidInput, "not a trainer"),
        ({"kind": "mentor_meeting", "course_id": "", "mentor": "tom"}, Conflict, "open already"),
    ]
    for change, error, message in refusals:
        with pytest.raises(error, match=message):
            course(client, settings, org, **change)
    with pytest.raises(InvalidInput, match="between 1 ms and 24 h"):
        Target(0, 10)
    catalog.update_course(client, ROOT, org.site, "offer-basics", retired=True)
    with pytest.raises(InvalidInput, match="retired"):
        course(client, settings, org)
    assert assignments.list_assignments(client, org.site) == [a]  # nothing refused was written


def test_admin_may_assign_a_manager_in_no_team_only_after_they_join_one(
        client: storage.Client, settings: Settings, org: Org) -> None:
    with pytest.raises(InvalidInput, match="in no team"):
        assignments.assign(client, settings, ROOT, site=org.site, manager="ghost", step="offer", kind="course",
                           course_id="offer-basics", due=today(), target=TARGET)
    led = course(client, settings, org, course_id="offer-workshop", mentor="tom")
    assert (led.kind, led.self_paced, led.mentor) == ("course", False, "tom")
    done = assignments.mark_done(client, settings, org.tom, led.assignment_id)  # a led course: its trainer
    assert done.state == "done"


def test_permissions_per_role(client: storage.Client, settings: Settings, org: Org) -> None:
    with pytest.raises(NotFound, match=r"^no manager m-1 in a team sam leads \(leads south\)$"):  # not: north
        assignments.assign(client, settings, org.sam, site=org.site, manager="m-1", step="offer", kind="course",
                           course_id="offer-basics", due=today() + timedelta(days=7), target=TARGET)
    for who in (org.tom, org.max):
        with pytest.raises(Forbidden, match="directors assign"):
            assignments.assign(client, settings, who, site=org.site, manager="m-1", step="offer", kind="course",
                               course_id="offer-basics", due=today() + timedelta(days=7), target=TARGET)
    m = meeting(client, settings, org)
    c = course(client, settings, org, manager="m-2")
    with pytest.raises(Forbidden, match="the trainer tom schedules"):
        assignments.schedule(client, settings, org.dana, m.assignment_id, at(today() + timedelta(days=1)))
    hidden = f"^no coaching assignment {m.assignment_id}$"  # what one may not see: as if it did not exist
    with pytest.raises(NotFound, match=hidden):
        assignments.schedule(client, settings, org.tina, m.assignment_id, at(today() + timedelta(days=1)))
    with pytest.raises(NotFound, match=f"^no coaching assignment {c.assignment_id}$"):
        assignments.mark_done(client, settings, org.max, c.assignment_id)  # not max's course
    with pytest.raises(Forbidden, match="manager m-2 marks a self-paced course done"):
        assignments.mark_done(client, settings, org.dana, c.assignment_id)
    with pytest.raises(Forbidden, match="the director of the team"):
        assignments.cancel(client, settings, org.tom, m.assignment_id, reason="x")
    with pytest.raises(NotFound, match=hidden):
        assignments.cancel(client, settings, org.sam, m.assignment_id, reason="x")
    with pytest.raises(NotFound, match=f"^no coaching assignment {c.assignment_id}$"):
        assignments.get(client, c.assignment_id, org.max)
    with pytest.raises(NotFound, match=f"^no coaching assignment {c.assignment_id[:8]}$"):
        assignments.get(client, c.assignment_id[:8], org.tina)

    def seen(user: object) -> set[str]:
        return {a.assignment_id for a in assignments.list_assignments(client, org.site, user)}  # type: ignore[arg-type]

    assert seen(org.admin) == seen(org.dana) == {m.assignment_id, c.assignment_id}
    assert seen(org.sam) == set() and seen(org.tina) == set()
    assert seen(org.tom) == {m.assignment_id} and seen(org.max) == {m.assignment_id}
    assert seen(org.mia) == {c.assignment_id}
    assert assignments.actions(org.tom, m).allowed == {"schedule"}
    assert assignments.actions(org.dana, m).allowed == {"cancel"}
    assert "the trainer tom schedules" in assignments.actions(org.dana, m).refused["schedule"]
    assert assignments.actions(org.mia, c).allowed == {"done", "acknowledge", "ask"}
    assert assignments.mark_done(client, settings, org.mia, c.assignment_id).state == "done"
    disabled = replace(org.dana, disabled=True)
    with pytest.raises(Forbidden, match="disabled"):
        assignments.cancel(client, settings, disabled, m.assignment_id, reason="x")


def test_a_racing_change_loses_and_is_told(client: storage.Client, settings: Settings, org: Org,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a = meeting(client, settings, org)
    winner = CoachingEvent(a.assignment_id, 1, str(uuid.uuid4()), datetime.now(UTC) - timedelta(seconds=1), "dana",
                           "cancelled", "someone else was first", {})
    insert = _store.insert_event

    def another_server_writes_first(client: storage.Client, site: str, event: CoachingEvent) -> None:
        insert(client, site, winner)  # another process, between our check and our write, with an earlier time
        insert(client, site, event)

    monkeypatch.setattr(_store, "insert_event", another_server_writes_first)
    with pytest.raises(Conflict, match="at the same time"):
        assignments.schedule(client, settings, org.tom, a.assignment_id, at(today() + timedelta(days=1)))
    monkeypatch.setattr(_store, "insert_event", insert)
    shown = assignments.get(client, a.assignment_id)
    assert shown.state == "cancelled" and [e.type for e in shown.history] == ["assigned", "cancelled"]
    assert len(_store.events(client, assignment_id=a.assignment_id)) == 3  # the loser's row stays, ignored
    assert "coaching.scheduled" not in audit_actions(client, a.assignment_id)
    with pytest.raises(Conflict, match="changed meanwhile"):  # a stale state is refused before writing
        assignments._append(client, settings, org.tom, a, CoachingEvent(
            a.assignment_id, 1, str(uuid.uuid4()), datetime.now(UTC), "tom", "scheduled", "",
            {"meeting_at": at(today() + timedelta(days=1)).isoformat()}))


def _history(client: storage.Client, org: Org, *, coached_factor: float, peer_factor: float = 1.0,
             split: int = 25) -> None:
    """75 days of offer sessions (an assignment of 30 days ago has its 28-day baseline from 72 days
    ago); from `split` days ago the coached manager's time is x coached_factor."""
    first, last = today() - timedelta(days=75), today() - timedelta(days=1)
    change = today() - timedelta(days=split)
    add_sessions(client, org.site, "m-1", first, change - timedelta(days=1), 300, seed=1)
    add_sessions(client, org.site, "m-1", change, last, 300 * coached_factor, seed=2)
    for i, peer in enumerate(["m-2", "m-3", "m-4", "s-1"]):
        add_sessions(client, org.site, peer, first, change - timedelta(days=1), 250, seed=10 + i)
        add_sessions(client, org.site, peer, change, last, 250 * peer_factor, seed=20 + i)


def _flag(client: storage.Client, org: Org, manager: str = "m-1", kind: str = "slow",
          status: str = "open") -> flag_store.StoredFlag:
    now = datetime.now(UTC) - timedelta(days=31)
    flag = flag_store.StoredFlag(
        flag_id=str(uuid.uuid4()), site=org.site, kind=kind, team="north", step="offer", manager=manager, managers=(),
        status=status, opened_at=now, updated_at=now, resolved_at=None, window_start=now.date(),
        window_end=now.date(), n=40, median_ms=300_000, min_ms=60_000, reference_ms=240_000, max_ms=280_000,
        q_value=None, start_date=None, periods_in_drawdown=3, minutes_lost_per_week=60.0, severity=1,
        reasons=("slow",), periods_without_condition=0, last_period=now.date(), version=0)
    flag_store.write(client, [flag])
    return flag


def test_evaluated_automatically_and_the_flag_goes_to_coaching_then_resolved(
        client: storage.Client, settings: Settings, org: Org) -> None:
    _history(client, org, coached_factor=0.7)
    band_versions.add_version(client, org.site, "offer", "", 60_000, 240_000, 280_000, today() - timedelta(days=90),
                              actor="test", reason="band")
    flag = _flag(client, org)
    assigned_at = at(today() - timedelta(days=30))
    a = course(client, settings, org, flag_id=flag.flag_id, due=assigned_at.date() + timedelta(days=7),
               now=assigned_at)
    assert flag_store.get(client, flag.flag_id).status == "coaching"
    assert [h["to_status"] for h in flag_store.history(client, flag.flag_id)] == ["coaching"]
    assignments.mark_done(client, settings, org.max, a.assignment_id, now=at(today() - timedelta(days=26)))

    with pytest.raises(InvalidTransition, match="can be evaluated from"):
        measure.evaluate_assignment(client, settings, a.assignment_id, org.dana, now=at(today() - timedelta(days=13)))
    with pytest.raises(Forbidden):
        measure.evaluate_assignment(client, settings, a.assignment_id, org.max)
    made = measure.evaluate_due(client, settings)
    assert [m.assignment_id for m in made] == [a.assignment_id]
    evaluation = made[0]
    assert evaluation.checkpoint == 0 and evaluation.verdict == "improved"
    assert evaluation.figures["peer_scope"] == "team"
    assert sorted(evaluation.figures["peers"]) == ["m-2", "m-3", "m-4"]
    assert evaluation.figures["relative_effect_pct"] < -15
    assert evaluation.figures["within_band"] and evaluation.target_met is True

    shown = assignments.get(client, a.assignment_id)
    assert (shown.state, shown.verdict, shown.target_met) == ("evaluated", "improved", True)
    assert shown.history[-1].actor == "coaching"
    assert measure.evaluations(client, a.assignment_id) == made
    assert flag_store.get(client, flag.flag_id).status == "resolved"
    assert flag_store.history(client, flag.flag_id)[-1]["actor"] == "coaching"
    assert measure.evaluate_due(client, settings) == []  # the follow-ups are not due yet
    with pytest.raises(InvalidTransition, match="the 30-day follow-up window runs"):
        measure.evaluate_assignment(client, settings, a.assignment_id)

    rows = measure.effectiveness_by(client, org.site, org.dana)
    assert [(r.key, r.summary.assignments, r.summary.improved) for r in rows] == [("offer-basics", 1, 1)]
    assert measure.effectiveness_by(client, org.site, org.sam) == []  # not his teams
    with pytest.raises(Forbidden):
        measure.effectiveness_by(client, org.site, org.max)
    chart = measure.before_after(client, settings, a.assignment_id, org.max)
    assert chart.post == (evaluation.post_since, evaluation.post_until)
    assert chart.manager_ms[0] is not None or chart.manager_ms[1] is not None or chart.manager_ms[2] is not None


def test_a_team_wide_speed_up_is_not_credited_and_the_flag_stays(
        client: storage.Client, settings: Settings, org: Org) -> None:
    _history(client, org, coached_factor=0.75, peer_factor=0.75)
    flag = _flag(client, org)
    a = course(client, settings, org, flag_id=flag.flag_id, due=today() - timedelta(days=23),
               now=at(today() - timedelta(days=30)))
    assignments.mark_done(client, settings, org.max, a.assignment_id, now=at(today() - timedelta(days=26)))
    evaluation = measure.evaluate_assignment(client, settings, a.assignment_id, org.dana)
    assert evaluation.figures["change_pct"] < -15  # the manager did get faster ...
    assert evaluation.verdict == "no_change"  # ... as fast as everyone else
    assert flag_store.get(client, flag.flag_id).status == "coaching"
    assert assignments.get(client, a.assignment_id).history[-1].actor == "dana"


@pytest.mark.slow
def test_follow_ups_at_30_and_60_days(client: storage.Client, settings: Settings, org: Org) -> None:
    first, last = today() - timedelta(days=130), today() - timedelta(days=1)
    add_sessions(client, org.site, "m-1", first, today() - timedelta(days=96), 300, seed=1)
    add_sessions(client, org.site, "m-1", today() - timedelta(days=95), last, 220, seed=2)
    for i, peer in enumerate(["m-2", "m-3"]):
        add_sessions(client, org.site, peer, first, last, 250, seed=10 + i)
    a = course(client, settings, org, due=today() - timedelta(days=95), now=at(today() - timedelta(days=100)))
    assignments.mark_done(client, settings, org.max, a.assignment_id, now=at(today() - timedelta(days=96)))
    made = measure.evaluate_due(client, settings)  # a late run: the evaluation and both follow-ups at once
    assert [m.checkpoint for m in made] == [0, 30, 60]
    assert all(m.verdict == "improved" for m in made)
    shown = assignments.get(client, a.assignment_id)
    assert shown.follow_ups == ((30, "improved"), (60, "improved"))
    assert [e.type for e in shown.history][-3:] == ["evaluated", "followed_up", "followed_up"]
    assert made[1].post_until == shown.done_on + timedelta(days=30)  # type: ignore[operator]
    assert measure.effectiveness_by(client, org.site)[0].summary.lasted == 1
    with pytest.raises(InvalidTransition, match="with its follow-ups"):
        measure.evaluate_assignment(client, settings, a.assignment_id)


def test_not_evaluated_before_the_data_after_the_window_is_in(
        client: storage.Client, settings: Settings, org: Org) -> None:
    a = course(client, settings, org, due=today() - timedelta(days=25), now=at(today() - timedelta(days=30)))
    assignments.mark_done(client, settings, org.max, a.assignment_id, now=at(today() - timedelta(days=26)))
    stale = at(today() - timedelta(days=12))  # received before the window after the coaching ended
    add_sessions(client, org.site, "m-1", today() - timedelta(days=50), today() - timedelta(days=31), 300,
                 received_at=stale)  # and nothing after the assignment: on leave
    add_sessions(client, org.site, "m-2", today() - timedelta(days=50), today() - timedelta(days=13), 300,
                 received_at=stale)
    with pytest.raises(InvalidTransition, match="once data that arrived after the window is in"):
        measure.evaluate_assignment(client, settings, a.assignment_id)
    assert measure.evaluate_due(client, settings) == []
    add_sessions(client, org.site, "m-2", today() - timedelta(days=7), today() - timedelta(days=1), 300)
    (evaluation,) = measure.evaluate_due(client, settings)
    assert evaluation.verdict == "insufficient_data"  # m-1 has no sessions after the coaching
    assert "0 sessions after it" in " ".join(evaluation.figures["reasons"])


def test_assigning_from_a_flag_checks_the_flag(client: storage.Client, settings: Settings, org: Org) -> None:
    for flag, message in ((_flag(client, org, manager="m-2"), "about m-2, not m-1"),
                          (_flag(client, org, kind="systemic", manager=""), "systemic"),
                          (_flag(client, org, kind="fast"), "fast flag"),
                          (_flag(client, org, status="dismissed"), "reopen it")):
        with pytest.raises((InvalidInput, InvalidTransition), match=message):
            course(client, settings, org, flag_id=flag.flag_id)
    with pytest.raises(NotFound):
        course(client, settings, org, flag_id=str(uuid.uuid4()))
    flag = _flag(client, org)
    first = course(client, settings, org, flag_id=flag.flag_id)
    second = meeting(client, settings, org, flag_id=flag.flag_id)  # a second coaching for the same flag
    assert first.flag_id == second.flag_id == flag.flag_id
    assert [h["to_status"] for h in flag_store.history(client, flag.flag_id)] == ["coaching"]


def test_courses_titled_in_another_script_get_distinct_readable_ids(client: storage.Client, org: Org) -> None:
    first = catalog.add_course(client, ROOT, site=org.site, title="Основы предложения", steps=["offer"])
    second = catalog.add_course(client, ROOT, site=org.site, title="Выявление потребностей", steps=["offer"])
    assert (first.course_id, second.course_id) == ("osnovy-predlozheniia", "vyiavlenie-potrebnostei")
    with pytest.raises(Conflict):  # the same title twice is still one course
        catalog.add_course(client, ROOT, site=org.site, title="Основы предложения", steps=["offer"])
