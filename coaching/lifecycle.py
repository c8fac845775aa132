"""A coaching assignment's states, its events, and the fold that turns events into the current state.

    assigned ──schedule──► scheduled ──done──► done ──(evaluated, automatic)──► evaluated
       │  └──────────────── done (a course) ────►│                                  │
       │                        │ (reschedule)   │                    followed_up at 30 and 60 days
       └──────── cancel (reason) ┴───────────────┴──► cancelled

Beside the states, the coached manager takes part: they acknowledge an open assignment (once), and
they ask questions about it at any time, which the trainer or the director answers. These events
change no state; they are kept on the assignment (`acknowledged_at`, `questions`).

The state of an assignment is never stored: it is `fold(events)`, and every command is checked by
applying its event to the folded state (`apply`), the same function the fold uses, so what is
refused when asked is exactly what the fold would not accept. Pure: no database, no clock (an
event's `at` is its time). Permissions are elsewhere (coaching/permissions.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from coaching.evaluation import CHECKPOINTS, VERDICTS
from kernel.errors import Conflict, InvalidInput

Kind = Literal["course", "mentor_meeting"]
KINDS: tuple[str, ...] = ("course", "mentor_meeting")
STATES: tuple[str, ...] = ("assigned", "scheduled", "done", "evaluated", "cancelled")
OPEN_STATES = frozenset({"assigned", "scheduled", "done"})
EVENT_TYPES: tuple[str, ...] = ("assigned", "scheduled", "done", "evaluated", "followed_up", "cancelled",
                                "acknowledged", "asked", "answered")
#: The longest question or answer: a note on an assignment, not a document.
MAX_NOTE_CHARS = 2000
TARGET_METRICS: tuple[str, ...] = ("median",)
#: Who records automatic changes (evaluations) in the events and the audit log.
SYSTEM_ACTOR = "coaching"
MIN_WINDOW_DAYS, MAX_WINDOW_DAYS = 7, 28


class InvalidTransition(Conflict):
    """The assignment cannot make this change in its current state (409)."""


@dataclass(frozen=True)
class Target:
    """What the coaching should achieve: the step's median at most `max_ms` within `within_days` of
    the assignment ("median of the offer step at most 4 min within 21 days")."""

    max_ms: int
    within_days: int
    metric: str = "median"

    def __post_init__(self) -> None:
        if self.metric not in TARGET_METRICS:
            raise InvalidInput(f"target metric must be one of {', '.join(TARGET_METRICS)} (got {self.metric!r})")
        if not 0 < self.max_ms <= 24 * 3_600_000:
            raise InvalidInput(f"target time must be between 1 ms and 24 h (got {self.max_ms} ms)", field="target_ms",
                               code="form_target_range")
        if not 1 <= self.within_days <= 366:
            raise InvalidInput(f"target deadline must be 1 to 366 days after the assignment (got {self.within_days})",
                               field="within_days", code="form_within_days_range")


@dataclass(frozen=True)
class CoachingEvent:
    """One immutable change of one assignment."""

    assignment_id: str
    seq: int
    event_id: str
    at: datetime
    actor: str
    type: str
    reason: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"assignment_id": self.assignment_id, "seq": self.seq, "event_id": self.event_id,
                "at": _iso(self.at), "actor": self.actor, "type": self.type, "reason": self.reason,
                "payload": self.payload}


@dataclass(frozen=True)
class Reply:
    """An answer to a manager's question, by a trainer, a director or an admin."""

    at: datetime
    by: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question the coached manager asked on the assignment, with the answers it got. Its id is
    the id of the event that asked it."""

    question_id: str
    at: datetime
    by: str
    text: str
    answers: tuple[Reply, ...] = ()

    @property
    def answered(self) -> bool:
        return bool(self.answers)

    def as_dict(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "at": _iso(self.at), "by": self.by, "text": self.text,
                "answered": self.answered,
                "answers": [{"at": _iso(r.at), "by": r.by, "text": r.text} for r in self.answers]}


@dataclass(frozen=True)
class CoachingAssignment:
    """An assignment as its events make it. `version` is the seq of its last applied event."""

    assignment_id: str
    site: str
    manager: str
    team: str
    step: str
    kind: str
    course_id: str  # "" for a mentor meeting
    mentor: str  # the trainer who runs it: the mentor of a meeting, or of a trainer-led course; "" if none
    self_paced: bool  # a course the manager takes alone and marks done
    due: date
    target: Target
    note: str
    flag_id: str  # the drawdown flag it was assigned from, or ""
    pre_days: int
    post_days: int
    assigned_at: datetime
    assigned_by: str
    state: str = "assigned"
    scheduled_for: datetime | None = None
    done_at: datetime | None = None
    done_by: str = ""
    evaluated_at: datetime | None = None
    verdict: str | None = None
    target_met: bool | None = None
    relative_effect_pct: float | None = None
    follow_ups: tuple[tuple[int, str], ...] = ()  # (checkpoint days, verdict)
    cancelled_at: datetime | None = None
    cancelled_by: str = ""
    cancel_reason: str = ""
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    questions: tuple[Question, ...] = ()
    version: int = 0
    history: tuple[CoachingEvent, ...] = field(default=(), repr=False)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def assigned_on(self) -> date:
        return self.assigned_at.date()

    @property
    def done_on(self) -> date | None:
        return self.done_at.date() if self.done_at else None

    @property
    def deadline(self) -> date:
        """The day by which the target should be met."""
        return self.assigned_on + timedelta(days=self.target.within_days)

    @property
    def unanswered(self) -> int:
        """How many of the manager's questions wait for an answer."""
        return sum(1 for q in self.questions if not q.answered)

    def next_checkpoint(self) -> int | None:
        """The evaluation still to come: 0 once done, then the follow-ups; None when nothing is left."""
        if self.state == "done":
            return 0
        if self.state == "evaluated":
            recorded = {c for c, _ in self.follow_ups}
            return next((c for c in CHECKPOINTS[1:] if c not in recorded), None)
        return None

    def evaluable_from(self, checkpoint: int) -> date | None:
        """The first day an evaluation at `checkpoint` may run: the day after its post window ends."""
        if self.done_on is None:
            return None
        return self.done_on + timedelta(days=(checkpoint or self.post_days) + 1)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the history."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "history":
                value = [e.as_dict() for e in value]
            elif name == "target":
                value = {"metric": value.metric, "max_ms": value.max_ms, "within_days": value.within_days}
            elif name == "follow_ups":
                value = [{"checkpoint": c, "verdict": v} for c, v in value]
            elif name == "questions":
                value = [q.as_dict() for q in value]
            elif isinstance(value, datetime | date):
                value = _iso(value)
            out[name] = value
        out["deadline"] = self.deadline.isoformat()
        out["unanswered"] = self.unanswered
        return out


def apply(current: CoachingAssignment | None, event: CoachingEvent) -> CoachingAssignment:
    """The assignment after `event`; raises InvalidTransition (409) or InvalidInput (400) when the
    event does not fit the state or its data is inconsistent."""
    if event.type not in EVENT_TYPES:
        raise InvalidInput(f"unknown coaching event {event.type!r}")
    if event.type == "assigned":
        if current is not None:
            raise InvalidTransition(f"assignment {event.assignment_id} exists already")
        return _assigned(event)
    if current is None:
        raise InvalidTransition(f"assignment {event.assignment_id} has no 'assigned' event")
    if event.seq != current.version + 1:
        raise InvalidTransition(f"assignment {current.assignment_id} changed meanwhile (event {event.seq} after "
                                f"{current.version}): reload it and try again")
    handler = {"scheduled": _scheduled, "done": _done, "evaluated": _evaluated, "followed_up": _followed_up,
               "cancelled": _cancelled, "acknowledged": _acknowledged, "asked": _asked,
               "answered": _answered}[event.type]
    changed = handler(current, event)
    return replace(changed, version=event.seq, history=(*current.history, event))


def fold(events: Iterable[CoachingEvent]) -> CoachingAssignment:
    """The current state of one assignment from its events (any order)."""
    folded = fold_all(events)
    if len(folded) != 1:
        raise InvalidInput(f"fold expects the events of one assignment (got {len(folded)})")
    return next(iter(folded.values()))


def fold_all(events: Iterable[CoachingEvent]) -> dict[str, CoachingAssignment]:
    """Assignment id -> current state, from the events of any number of assignments.

    Events apply in (seq, at, event_id) order. Of two events racing for one seq, the first in that
    order wins and the other is skipped; so is any event the rules refuse (none is written that
    way, but the fold does not trust the table).
    """
    ordered = sorted(events, key=lambda e: (e.assignment_id, e.seq, e.at, e.event_id))
    out: dict[str, CoachingAssignment] = {}
    for event in ordered:
        current = out.get(event.assignment_id)
        if current is not None and event.seq <= current.version:
            continue  # lost a race for this seq
        if current is None and event.seq != 0:
            continue
        try:
            out[event.assignment_id] = apply(current, event)
        except (InvalidTransition, InvalidInput):
            continue
    return out


def possible(assignment: CoachingAssignment, now: datetime) -> frozenset[str]:
    """The commands the state allows now, whoever asks: schedule, done, cancel, evaluate, acknowledge,
    ask, answer."""
    moves = {"ask"}
    if assignment.is_open and assignment.acknowledged_at is None:
        moves.add("acknowledge")
    if assignment.questions:
        moves.add("answer")
    if assignment.state in ("assigned", "scheduled") and assignment.mentor and now.date() <= assignment.due:
        moves.add("schedule")
    if assignment.state == "assigned" and assignment.kind == "course":
        moves.add("done")
    if assignment.state == "scheduled" and assignment.scheduled_for and now >= assignment.scheduled_for:
        moves.add("done")
    if assignment.is_open:
        moves.add("cancel")
    checkpoint = assignment.next_checkpoint()
    if checkpoint is not None and now.date() >= assignment.evaluable_from(checkpoint):  # type: ignore[operator]
        moves.add("evaluate")
    return frozenset(moves)


# --- the rules of each event ------------------------------------------------------------------


def _assigned(event: CoachingEvent) -> CoachingAssignment:
    p = event.payload
    if event.seq != 0:
        raise InvalidTransition("the 'assigned' event is the first of an assignment (seq 0)")
    try:
        kind, due = p["kind"], date.fromisoformat(p["due"])
        target = Target(int(p["target"]["max_ms"]), int(p["target"]["within_days"]),
                        p["target"].get("metric", "median"))
        pre_days, post_days = int(p.get("pre_days", 14)), int(p.get("post_days", 14))
        fields = {k: str(p.get(k) or "") for k in ("site", "manager", "team", "step", "course_id", "mentor", "note",
                                                   "flag_id")}
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"an assignment needs kind, due (YYYY-MM-DD) and a target: {exc}") from None
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)} (got {kind!r})", field="kind")
    for name in ("site", "manager", "step"):
        if not fields[name]:
            raise InvalidInput(f"an assignment needs a {name}", field=name, code=f"form_{name}_missing")
    if kind == "course" and not fields["course_id"]:
        raise InvalidInput("a course assignment names the course", field="course_id", code="form_course_missing")
    if kind == "mentor_meeting" and (not fields["mentor"] or fields["course_id"]):
        raise InvalidInput("a mentor meeting names the mentor, and no course", field="mentor",
                           code="form_meeting_no_course" if fields["mentor"] else "form_meeting_mentor")
    self_paced = bool(p.get("self_paced", False)) and kind == "course"
    if kind == "course" and not self_paced and not fields["mentor"]:
        raise InvalidInput("a course led by a trainer needs the trainer (mentor) who runs it", field="mentor",
                           code="form_course_trainer_missing")
    if self_paced and fields["mentor"]:
        raise InvalidInput("a self-paced course has no trainer: the manager takes it alone", field="mentor",
                           code="form_self_paced_trainer")
    for name, days in (("pre", pre_days), ("post", post_days)):
        if not MIN_WINDOW_DAYS <= days <= MAX_WINDOW_DAYS:
            raise InvalidInput(f"the {name} window is {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS} days (got {days})",
                               field=f"{name}_days")
    today = event.at.date()
    if due < today:
        raise InvalidInput(f"the due date {due} is in the past (today is {today})", field="due")
    deadline = today + timedelta(days=target.within_days)
    if due + timedelta(days=post_days) > deadline:
        raise InvalidInput(
            f"the target's deadline {deadline} ({target.within_days} days) comes before the coaching due {due} plus "
            f"the {post_days}-day window that measures it ({due + timedelta(days=post_days)}): move the due date "
            f"earlier or give the target more days", field="within_days")
    return CoachingAssignment(
        assignment_id=event.assignment_id, site=fields["site"], manager=fields["manager"], team=fields["team"],
        step=fields["step"], kind=kind, course_id=fields["course_id"], mentor=fields["mentor"], self_paced=self_paced,
        due=due, target=target, note=fields["note"], flag_id=fields["flag_id"], pre_days=pre_days,
        post_days=post_days, assigned_at=event.at, assigned_by=event.actor, version=0, history=(event,))


def _scheduled(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    if a.state not in ("assigned", "scheduled"):
        raise InvalidTransition(f"only an assigned or scheduled assignment can be (re)scheduled; this one is {a.state}")
    if not a.mentor:
        raise InvalidTransition("a self-paced course has no meeting to schedule: the manager marks it done")
    try:
        meeting = _aware(datetime.fromisoformat(event.payload["meeting_at"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("scheduling needs the meeting's date and time (ISO 8601)", field="meeting_at") from None
    if meeting <= event.at:
        raise InvalidInput(f"the meeting time {_iso(meeting)} is in the past (now {_iso(event.at)})",
                           field="meeting_at")
    if meeting.date() > a.due:
        raise InvalidInput(f"the meeting ({meeting.date()}) would be after the due date {a.due}", field="meeting_at")
    return replace(a, state="scheduled", scheduled_for=meeting)


def _done(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    if a.state not in ("assigned", "scheduled"):
        raise InvalidTransition(f"only an assigned or scheduled assignment can be marked done; this one is {a.state}")
    if a.kind == "mentor_meeting" and a.state != "scheduled":
        raise InvalidTransition("a mentor meeting is scheduled before it is done")
    if a.scheduled_for is not None and event.at < a.scheduled_for:
        raise InvalidTransition(f"the meeting is at {_iso(a.scheduled_for)}: it cannot be done before "
                                f"(now {_iso(event.at)})")
    return replace(a, state="done", done_at=event.at, done_by=event.actor)


def _evaluated(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    if a.state != "done":
        raise InvalidTransition(f"only a done assignment is evaluated; this one is {a.state}")
    _check_evaluation_time(a, event, 0)
    verdict = _verdict(event)
    effect = event.payload.get("relative_effect_pct")
    target_met = event.payload.get("target_met")
    return replace(a, state="evaluated", evaluated_at=event.at, verdict=verdict,
                   target_met=None if target_met is None else bool(target_met),
                   relative_effect_pct=None if effect is None else float(effect))


def _followed_up(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    if a.state != "evaluated":
        raise InvalidTransition(f"follow-ups come after the evaluation; this assignment is {a.state}")
    checkpoint = event.payload.get("checkpoint")
    if checkpoint not in CHECKPOINTS[1:]:
        raise InvalidInput(f"a follow-up is at {' or '.join(map(str, CHECKPOINTS[1:]))} days (got {checkpoint!r})")
    if checkpoint in {c for c, _ in a.follow_ups}:
        raise InvalidTransition(f"the {checkpoint}-day follow-up is recorded already")
    _check_evaluation_time(a, event, checkpoint)
    return replace(a, follow_ups=(*a.follow_ups, (checkpoint, _verdict(event))))


def _cancelled(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    if not a.is_open:
        raise InvalidTransition(f"only an open assignment (assigned, scheduled, done) can be cancelled; "
                                f"this one is {a.state}")
    if not event.reason.strip():
        raise InvalidInput("cancelling needs a reason", field="reason")
    return replace(a, state="cancelled", cancelled_at=event.at, cancelled_by=event.actor,
                   cancel_reason=event.reason.strip())


def _acknowledged(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    if a.acknowledged_at is not None:
        raise InvalidTransition(f"the assignment was acknowledged already, on {_iso(a.acknowledged_at)}")
    if not a.is_open:
        raise InvalidTransition(f"only an open assignment (assigned, scheduled, done) is acknowledged; "
                                f"this one is {a.state}")
    return replace(a, acknowledged_at=event.at, acknowledged_by=event.actor)


def _asked(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    text = _note_text(event, "a question")
    return replace(a, questions=(*a.questions, Question(event.event_id, event.at, event.actor, text)))


def _answered(a: CoachingAssignment, event: CoachingEvent) -> CoachingAssignment:
    asked = str(event.payload.get("question_id") or "")
    found = next((q for q in a.questions if q.question_id == asked), None)
    if found is None:
        raise InvalidInput(f"no question {asked or '(none given)'} on this assignment", field="question_id")
    text = _note_text(event, "an answer")
    changed = replace(found, answers=(*found.answers, Reply(event.at, event.actor, text)))
    return replace(a, questions=tuple(changed if q is found else q for q in a.questions))


def _note_text(event: CoachingEvent, what: str) -> str:
    text = str(event.payload.get("text") or "").strip()
    if not text:
        raise InvalidInput(f"{what} needs some text", field="text")
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidInput(f"{what} is at most {MAX_NOTE_CHARS} characters (got {len(text)})", field="text")
    return text


def _check_evaluation_time(a: CoachingAssignment, event: CoachingEvent, checkpoint: int) -> None:
    first = a.evaluable_from(checkpoint)
    if first is None or event.at.date() < first:
        raise InvalidTransition(f"the window after the coaching ends on {first - timedelta(days=1)}: "  # type: ignore[operator]
                                f"it can be evaluated from {first}")


def _verdict(event: CoachingEvent) -> str:
    verdict = event.payload.get("verdict")
    if verdict not in VERDICTS:
        raise InvalidInput(f"verdict must be one of {', '.join(VERDICTS)} (got {verdict!r})")
    return str(verdict)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return _aware(value).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value.isoformat()


def payload_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def events_in_order(events: Sequence[CoachingEvent]) -> list[CoachingEvent]:
    return sorted(events, key=lambda e: (e.seq, e.at, e.event_id))
