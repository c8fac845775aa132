"""Coaching assignments: assign, schedule, mark done, cancel, show and list; the coached manager
acknowledges an assignment and asks questions on it, which the trainer or the director answers.

Event-sourced. Each command folds the assignment's events into its current state, checks who is
asking (coaching/permissions.py), builds the new event and applies it to that state with the
fold's own rules (coaching/lifecycle.py), then appends it to `coaching_events`. Nothing else
holds the state: what `get` shows is the fold of the events.

ClickHouse has no transactions, so the append is optimistic: the event takes the next `seq`; if a
concurrent command took the same one, the fold keeps the earlier and the later command is told
(Conflict) before anything else (audit, webhook, flag) follows from it.

Every change is also recorded in the audit log and, when a webhook is configured, queued for it
(coaching/outbox.py). Assigning from a drawdown flag moves the flag to `coaching`.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from analysis.flags import InvalidTransition as FlagTransitionError
from analysis.flags import transition as flag_transition
from coaching import _store, catalog, outbox, permissions
from coaching.evaluation import PRE_DAYS
from coaching.lifecycle import (
    OPEN_STATES,
    CoachingAssignment,
    CoachingEvent,
    InvalidTransition,
    Target,
    apply,
    fold_all,
    possible,
)
from coaching.permissions import Account
from kernel import audit, flag_store, processes, sites, teams, users
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.settings import Settings

_WRITE_LOCK = threading.Lock()


def assign(
    client: Client,
    settings: Settings,
    user: Account,
    *,
    site: str,
    manager: str,
    step: str,
    kind: str,
    due: date,
    target: Target,
    course_id: str = "",
    mentor: str = "",
    note: str = "",
    flag_id: str = "",
    pre_days: int = PRE_DAYS,
    post_days: int = 14,
    now: datetime | None = None,
) -> CoachingAssignment:
    """Assign a course or a mentor meeting to a manager for a step.

    `mentor` is the trainer who meets the manager (a mentor meeting) or runs a course that is not
    self-paced. With `flag_id`, the drawdown flag the director acted on: it must be this manager's
    slow flag on this step, and moves to `coaching`.
    """
    now = _now(now)
    sites.get_site(client, site)
    process = processes.latest(client, site)
    if process is None:
        raise InvalidInput(f"site {site} has no process yet")
    process.step(step)  # NotFound names the step
    team = teams.members(client, site).get(manager, "")
    permissions.require_assign(user, manager=manager, team=team)
    if not team:
        raise InvalidInput(f"manager {manager!r} is in no team on site {site}: stepwatch teams assign TEAM {manager} "
                           f"--site {site}", field="manager", code="form_manager_no_team", values={"manager": manager})
    self_paced = False
    if kind == "course":
        course = catalog.get_course(client, site, course_id)
        if course.retired:
            raise InvalidInput(f"course {course_id!r} is retired", field="course_id", code="form_course_retired",
                               values={"course": course_id})
        if not course.addresses(step):
            raise InvalidInput(f"course {course_id!r} addresses {', '.join(course.steps)}, not {step}",
                               field="course_id", code="form_course_other_step",
                               values={"course": course_id, "step": step})
        self_paced = course.self_paced
        if self_paced and mentor:
            raise InvalidInput(f"course {course_id!r} is self-paced: it has no trainer", field="mentor",
                               code="form_self_paced_trainer")
        if not self_paced and not mentor:
            raise InvalidInput(f"course {course_id!r} is led by a trainer: name the trainer (mentor) who runs it",
                               field="mentor", code="form_course_trainer_missing")
    if mentor:
        _check_mentor(client, site, mentor, step)
    flag = _linkable_flag(client, user, flag_id, site=site, manager=manager, step=step) if flag_id else None
    if any(a.manager == manager and a.step == step and a.kind == kind and a.course_id == course_id
           and a.mentor == mentor and a.is_open for a in _fold_site(client, site).values()):
        raise Conflict(f"{manager} has this coaching on {step} open already", code="form_already_open",
                       values={"manager": manager, "step": step})
    payload: dict[str, Any] = {
        "site": site, "manager": manager, "team": team, "step": step, "kind": kind, "course_id": course_id,
        "mentor": mentor, "self_paced": self_paced, "due": due.isoformat(), "note": note.strip(),
        "flag_id": flag.flag_id if flag else "", "pre_days": pre_days, "post_days": post_days,
        "target": {"metric": target.metric, "max_ms": target.max_ms, "within_days": target.within_days},
    }
    event = CoachingEvent(str(uuid.uuid4()), 0, str(uuid.uuid4()), now, user.name, "assigned", "", payload)
    assignment = _append(client, settings, user, None, event)
    if flag is not None and flag.status != "coaching":
        flag_store.change_status(client, flag, "coaching", actor=user.name,
                                 reason=f"coaching assignment {assignment.assignment_id}")
    return assignment


def schedule(client: Client, settings: Settings, user: Account, assignment_id: str, meeting_at: datetime, *,
             reason: str = "", now: datetime | None = None) -> CoachingAssignment:
    """Set (or move) the date and time of the meeting; by the trainer who runs it."""
    current = get(client, assignment_id, user)
    permissions.require(user, "schedule", current)
    meeting = meeting_at if meeting_at.tzinfo else meeting_at.replace(tzinfo=UTC)
    return _change(client, settings, user, current, "scheduled", reason,
                   {"meeting_at": meeting.astimezone(UTC).isoformat()}, now)


def mark_done(client: Client, settings: Settings, user: Account, assignment_id: str, *, note: str = "",
              now: datetime | None = None) -> CoachingAssignment:
    """Record that the meeting took place or the course was completed."""
    current = get(client, assignment_id, user)
    permissions.require(user, "done", current)
    return _change(client, settings, user, current, "done", "", {"note": note.strip()}, now)


def cancel(client: Client, settings: Settings, user: Account, assignment_id: str, *, reason: str,
           now: datetime | None = None) -> CoachingAssignment:
    """Cancel an open assignment; the reason is required. A linked flag stays as it is (a flag in
    `coaching` goes back to open only by the analysis's rules: resolve or dismiss it by hand)."""
    current = get(client, assignment_id, user)
    permissions.require(user, "cancel", current)
    return _change(client, settings, user, current, "cancelled", reason, {}, now)


def acknowledge(client: Client, settings: Settings, user: Account, assignment_id: str, *,
                now: datetime | None = None) -> CoachingAssignment:
    """The coached manager confirms they have seen the assignment (once, while it is open)."""
    current = get(client, assignment_id, user)
    permissions.require(user, "acknowledge", current)
    return _change(client, settings, user, current, "acknowledged", "", {}, now)


def ask(client: Client, settings: Settings, user: Account, assignment_id: str, text: str, *,
        now: datetime | None = None) -> CoachingAssignment:
    """The coached manager asks a question on the assignment, for its trainer and director."""
    current = get(client, assignment_id, user)
    permissions.require(user, "ask", current)
    return _change(client, settings, user, current, "asked", "", {"text": text.strip()}, now)


def answer(client: Client, settings: Settings, user: Account, assignment_id: str, question_id: str, text: str, *,
           now: datetime | None = None) -> CoachingAssignment:
    """Answer one of the manager's questions (`question_id` = the id the question has on the assignment)."""
    current = get(client, assignment_id, user)
    permissions.require(user, "answer", current)
    return _change(client, settings, user, current, "answered", "",
                   {"question_id": question_id.strip(), "text": text.strip()}, now)


def get(client: Client, assignment_id: str, user: Account | None = None) -> CoachingAssignment:
    """One assignment with its history (`.history`), as its events make it, by its id or a unique
    prefix of it. `user` = what they may see: an assignment hidden from them is NotFound (404), and a
    prefix is unique or not among what they see, so it tells nothing of the others."""
    found = list(fold_all(_store.events(client, assignment_ids=_store.matching_ids(client, assignment_id))).values())
    if user is not None:
        found = [a for a in found if permissions.sees(user, a)]
    if not found:
        raise NotFound(permissions.unknown_assignment(assignment_id.strip()))
    if len(found) > 1:
        raise InvalidInput(f"{assignment_id.strip()} is the start of several assignment ids: give more of it")
    assignment = found[0]
    if user is not None:
        permissions.require(user, "view", assignment)  # a disabled account
    return assignment


def list_assignments(client: Client, site: str, user: Account | None = None, *, state: str | None = None,
                     manager: str | None = None, step: str | None = None, mentor: str | None = None,
                     team: str | None = None, open_only: bool = False) -> list[CoachingAssignment]:
    """A site's assignments, those `user` may see, by due date (open first)."""
    found = list(_fold_site(client, site).values())
    if user is not None:
        found = permissions.visible(user, found)
    found = [a for a in found if (state is None or a.state == state) and (manager is None or a.manager == manager)
             and (step is None or a.step == step) and (mentor is None or a.mentor == mentor)
             and (team is None or a.team == team) and (not open_only or a.is_open)]
    return sorted(found, key=lambda a: (not a.is_open, a.due, a.assigned_at))


@dataclass(frozen=True)
class Actions:
    """What a user can do with an assignment now (for buttons), and why not for the rest."""

    allowed: frozenset[str]
    refused: dict[str, permissions.Refusal]


def actions(user: Account, assignment: CoachingAssignment, now: datetime | None = None) -> Actions:
    """The commands the state allows now and `user` may give: schedule, done, cancel, evaluate,
    acknowledge, ask, answer."""
    moves = possible(assignment, _now(now))
    allowed, refused = set(), {}
    for move in sorted(moves):
        reason = permissions.refusal(user, move, assignment)
        if reason is None:
            allowed.add(move)
        else:
            refused[move] = reason
    return Actions(frozenset(allowed), refused)


# --- internals, shared with coaching/measure.py -----------------------------------------------


def _change(client: Client, settings: Settings, user: Account, current: CoachingAssignment, kind: str, reason: str,
            payload: dict[str, Any], now: datetime | None) -> CoachingAssignment:
    event = CoachingEvent(current.assignment_id, current.version + 1, str(uuid.uuid4()), _now(now), user.name, kind,
                          reason.strip(), payload)
    return _append(client, settings, user, current, event)


def _append(client: Client, settings: Settings, user: Account, current: CoachingAssignment | None,
            event: CoachingEvent) -> CoachingAssignment:
    """Check, write, confirm, then audit and notify. Returns the new state.

    Within this process a lock makes read-check-write atomic; between processes (several servers
    on one ClickHouse) the fold's rule decides a race and the loser is told after its write.
    """
    after = apply(current, event)  # raises when the rules refuse it
    with _WRITE_LOCK:
        latest = fold_all(_store.events(client, assignment_id=event.assignment_id)).get(event.assignment_id)
        if (latest.version if latest else None) != (current.version if current else None):
            raise Conflict(f"assignment {event.assignment_id} changed meanwhile: reload it and try again")
        _store.insert_event(client, after.site, event)
        stored = fold_all(_store.events(client, assignment_id=event.assignment_id)).get(event.assignment_id)
    if stored is None or event.event_id not in {e.event_id for e in stored.history}:
        raise Conflict(f"assignment {event.assignment_id} was changed by someone else at the same time: reload it "
                       "and try again")
    details: dict[str, Any] = {"state": [current.state if current else "", stored.state], **event.payload}
    via = getattr(user, "via", "")
    if via:
        details["via"] = via
    audit.record(client, user.name, f"coaching.{event.type}", event.assignment_id, event.reason, details)
    outbox.enqueue(client, settings, site=stored.site, topic=f"coaching.{event.type}", obj=event.assignment_id,
                   body=notification(stored, event), now=event.at)
    return stored


def _fold_site(client: Client, site: str) -> dict[str, CoachingAssignment]:
    return fold_all(_store.events(client, site=site))


def _check_mentor(client: Client, site: str, name: str, step: str) -> None:
    try:
        account = users.get_user(client, name)
    except NotFound:
        raise InvalidInput(f"no account named {name!r} to mentor", field="mentor", code="form_mentor_unknown",
                           values={"mentor": name}) from None
    if account.role != "trainer":
        raise InvalidInput(f"{name} is a {account.role}, not a trainer: meetings and led courses are run by trainers",
                           field="mentor", code="form_mentor_not_trainer", values={"mentor": name})
    if account.disabled:
        raise InvalidInput(f"the account {name} is disabled", field="mentor", code="form_mentor_disabled",
                           values={"mentor": name})
    mentor = catalog.get_mentor(client, site, name)
    if not mentor.coaches(step):
        raise InvalidInput(f"{name} coaches {', '.join(mentor.steps)}, not {step}: "
                           f"stepwatch mentors set {site} {name} --step {step} ...", field="mentor",
                           code="form_mentor_other_step", values={"mentor": name, "step": step})


def _linkable_flag(client: Client, user: Account, flag_id: str, *, site: str, manager: str,
                   step: str) -> flag_store.StoredFlag:
    flag = flag_store.get(client, flag_id)
    if not permissions.sees_flag(user, flag.team):
        raise NotFound(f"no flag {flag_id}")  # as for a flag that does not exist: nothing of another team's
    if flag.site != site or flag.step != step:
        raise InvalidInput(f"flag {flag_id} is about {flag.step} on site {flag.site}, not {step} on {site}")
    if flag.kind == "systemic":
        raise InvalidInput(f"flag {flag_id} is systemic: much of team {flag.team} is slow on {step}, which points at "
                           "the step or its CRM page; coaching one manager does not address it")
    if flag.kind != "slow":
        raise InvalidInput(f"flag {flag_id} is a {flag.kind} flag (possible skipped work): the coaching effect is "
                           "measured as a shorter time, which is not what it needs")
    if flag.manager != manager:
        raise InvalidInput(f"flag {flag_id} is about {flag.manager}, not {manager}")
    if flag.status != "coaching":
        try:
            flag_transition(flag.status, "coaching")
        except FlagTransitionError:
            raise InvalidTransition(f"flag {flag_id} is {flag.status}: reopen it before assigning coaching "
                                    "from it") from None
    return flag


def notification(a: CoachingAssignment, event: CoachingEvent) -> dict[str, Any]:
    """The webhook body of an event: the structured fields and a sentence (`text`, Slack-compatible)."""
    what = f"course {a.course_id}" if a.kind == "course" else f"a meeting with {a.mentor}"
    subject = f"{a.manager} (team {a.team}) on step {a.step}"
    if event.type == "assigned":
        text = (f"{event.actor} assigned {what} to {subject}, due {a.due}; target: median at most "
                f"{_duration(a.target.max_ms)} by {a.deadline}.")
    elif event.type == "scheduled":
        text = f"{event.actor} scheduled {what} for {subject} at {_when(a.scheduled_for)}."
    elif event.type == "done":
        text = f"{event.actor} marked {what} for {subject} done."
    elif event.type == "cancelled":
        text = f"{event.actor} cancelled {what} for {subject}: {event.reason}"
    elif event.type == "acknowledged":
        text = f"{event.actor} acknowledged {what} on step {a.step}."
    elif event.type == "asked":
        text = f"{event.actor} asked about {what} on step {a.step}: {event.payload.get('text', '')}"
    elif event.type == "answered":
        text = f"{event.actor} answered a question of {subject} about {what}: {event.payload.get('text', '')}"
    elif event.type == "evaluated":
        text = f"Coaching of {subject} ({what}) evaluated: {str(a.verdict).replace('_', ' ')}" + _effect(a) + "."
    else:
        checkpoint = event.payload.get("checkpoint")
        verdict = str(event.payload.get("verdict", "")).replace("_", " ")
        text = f"{checkpoint} days after the coaching of {subject} ({what}): {verdict}."
    return {"type": f"coaching.{event.type}", "text": text, "site": a.site, "assignment_id": a.assignment_id,
            "manager": a.manager, "team": a.team, "step": a.step, "kind": a.kind, "course_id": a.course_id,
            "mentor": a.mentor, "state": a.state, "due": a.due.isoformat(), "actor": event.actor,
            "at": _store.iso(event.at), "reason": event.reason, "verdict": a.verdict}


def _effect(a: CoachingAssignment) -> str:
    return f", {a.relative_effect_pct:+.0f}% relative to peers" if a.relative_effect_pct is not None else ""


def _duration(ms: int) -> str:
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _now(now: datetime | None) -> datetime:
    """Aware UTC, to the millisecond: what coaching_events.at keeps."""
    value = datetime.now(UTC) if now is None else now if now.tzinfo else now.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


__all__ = ["OPEN_STATES", "Actions", "acknowledge", "actions", "answer", "ask", "assign", "cancel", "get",
           "list_assignments", "mark_done", "notification", "schedule"]
