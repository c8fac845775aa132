"""Who may do what with coaching: pure functions of the acting account and the assignment.

    admin     everything
    director  assigns, cancels, evaluates and sees the assignments of the teams they lead
    trainer   schedules, marks done, evaluates and sees what is assigned to them (as mentor)
    manager   sees their own assignments, marks their self-paced courses done, acknowledges them
              and asks questions on them

Acknowledging and asking are the coached manager's own words, so nobody else gives them, an admin
included; whoever else sees the assignment (its trainer, the team's director, an admin) answers.

The catalog: courses are added by admins, directors and trainers; mentors are set by admins and
directors (and a trainer may set the steps they coach themselves).

Visibility comes first: an assignment the account may not see answers NotFound (404), with the
words an id that does not exist gets, whatever the action, so no refusal describes someone else's
coaching. Only then is a refusal a kernel.errors.Forbidden (403) whose message says why.

The acting account is anything with the fields of kernel.users.User that matter here (name,
role, teams, manager_id, disabled): a User from a login or a token, `Operator` for the command
line on the host, or `ActingAs` for `--as USER`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from coaching.lifecycle import CoachingAssignment
from kernel.errors import Forbidden, NotFound

Action = Literal["view", "assign", "schedule", "done", "cancel", "evaluate", "courses", "mentors", "effectiveness",
                 "acknowledge", "ask", "answer"]
ACTIONS: tuple[str, ...] = ("view", "assign", "schedule", "done", "cancel", "evaluate", "courses", "mentors",
                            "effectiveness", "acknowledge", "ask", "answer")
#: What only the coached manager does, in their own name.
MANAGER_OWN = ("acknowledge", "ask")


class Account(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def teams(self) -> tuple[str, ...]: ...
    @property
    def manager_id(self) -> str: ...
    @property
    def disabled(self) -> bool: ...


@dataclass(frozen=True)
class Operator:
    """Whoever runs a command on the host: the data directory is theirs, so they act as an admin
    (the name is kernel.audit.cli_actor(), e.g. cli:ops)."""

    name: str
    role: str = "admin"
    teams: tuple[str, ...] = ()
    manager_id: str = ""
    disabled: bool = False
    via: str = ""


@dataclass(frozen=True)
class ActingAs:
    """An account's rights, used by someone else's channel (`--as USER` on the host): the audit log
    records the account and, in `via`, who used it."""

    name: str
    role: str
    teams: tuple[str, ...]
    manager_id: str
    disabled: bool
    via: str

    @classmethod
    def of(cls, user: Account, via: str) -> ActingAs:
        return cls(user.name, user.role, tuple(user.teams), user.manager_id, user.disabled, via)


class Refusal(str):
    """Why an action is refused: the English sentence (a str, for the CLI and the logs), with a `code` and
    the `values` it names, which the dashboards word in the reader's language (coaching.refusal_<code>)."""

    code: str
    values: dict[str, str]

    def __new__(cls, text: str, code: str, **values: str) -> Refusal:
        made = super().__new__(cls, text)
        made.code, made.values = code, values
        return made


def refusal(user: Account, action: str, assignment: CoachingAssignment | None = None, *,
            team: str | None = None) -> Refusal | None:
    """Why `user` may not do `action` (on `assignment`, or for a manager of `team` when assigning),
    or None when they may."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    who = f"{user.name} ({user.role})"
    if user.disabled:
        return Refusal(f"the account {user.name} is disabled", "disabled", name=user.name)
    if action in MANAGER_OWN:
        if assignment is None:
            raise ValueError(f"{action} needs the assignment")
        if user.role != "admin" and (hidden := _view(user, assignment, who)) is not None:
            return hidden
        if user.role == "manager" and user.manager_id == assignment.manager:
            return None
        return Refusal(f"{who} cannot {action}: only the coached manager {assignment.manager} does, in their own name",
                       "manager_own", manager=assignment.manager)
    if user.role == "admin":
        return None
    if action in ("view", "schedule", "done", "cancel", "evaluate", "answer") and assignment is None:
        raise ValueError(f"{action} needs the assignment")
    if assignment is not None and (hidden := _view(user, assignment, who)) is not None:
        return hidden  # visibility first: what one may not see, one may do nothing with
    if action == "view":
        return None
    if action == "assign":
        if user.role != "director":
            return Refusal(f"{who} cannot assign coaching: directors assign it for the teams they lead",
                           "assign_directors")
        if not team:
            return Refusal(f"{who} cannot assign coaching to a manager who is in no team", "assign_no_team")
        if team not in user.teams:
            return Refusal(f"{who} does not lead team {team} ({_led(user)})", "not_your_team", team=team)
        return None
    if action == "cancel":
        if user.role != "director":
            return Refusal(f"{who} cannot cancel coaching: the director of the team does", "cancel_directors")
        return _leads(user, assignment, who)  # type: ignore[arg-type]
    if action == "schedule":
        if user.role == "trainer" and assignment.mentor == user.name:  # type: ignore[union-attr]
            return None
        return _trainer_only(who, assignment, "schedules the meeting", "schedule")  # type: ignore[arg-type]
    if action == "done":
        a: CoachingAssignment = assignment  # type: ignore[assignment]
        if user.role == "trainer" and a.mentor == user.name:
            return None
        if user.role == "manager" and user.manager_id == a.manager:
            if a.kind == "course" and a.self_paced:
                return None
            return Refusal(f"{who} cannot mark this done: it is {_what(a)}, recorded by the trainer {a.mentor}",
                               "done_by_trainer", mentor=a.mentor)
        if a.kind == "course" and a.self_paced:
            return Refusal(f"{who} cannot mark this done: the manager {a.manager} marks a self-paced course done",
                           "done_self_paced", manager=a.manager)
        return _trainer_only(who, a, "marks it done", "done")
    if action == "evaluate":
        a = assignment  # type: ignore[assignment]
        if user.role == "director":
            return _leads(user, a, who)
        if user.role == "trainer" and a.mentor == user.name:
            return None
        return Refusal(f"{who} cannot evaluate this assignment: the director of team {a.team or '-'} or its "
                       "trainer can",
                       "evaluate", team=a.team)
    if action == "answer":
        if user.role in ("director", "trainer"):
            return None  # seeing it is enough: the trainer who runs it, or the team's director
        return Refusal(f"{who} cannot answer: the trainer or the director answers the manager's questions", "answer")
    if action == "courses":
        if user.role in ("director", "trainer"):
            return None
        return Refusal(f"{who} cannot change the course catalog", "courses")
    if action == "mentors":
        return None if user.role == "director" else Refusal(f"{who} cannot change who mentors what", "mentors")
    if action == "effectiveness":
        if user.role in ("director", "trainer"):
            return None
        return Refusal(f"{who} cannot see coaching effectiveness", "effectiveness")
    raise AssertionError(action)


def require(user: Account, action: str, assignment: CoachingAssignment | None = None, *,
            team: str | None = None) -> None:
    """Raise NotFound (404) when `user` may not see the assignment, whatever the action: the answer
    is the one an id that does not exist gets, so it says nothing of someone else's coaching. Then
    Forbidden (403) with the reason when they see it but may not do `action`."""
    if assignment is not None and not user.disabled and not sees(user, assignment):
        raise NotFound(unknown_assignment(assignment.assignment_id))
    reason = refusal(user, action, assignment, team=team)
    if reason is not None:
        raise Forbidden(reason, code=f"refusal_{reason.code}", values=reason.values)


def sees(user: Account, assignment: CoachingAssignment) -> bool:
    """Whether the assignment is within what `user` may see (a disabled account aside)."""
    return user.role == "admin" or _view(user, assignment, "") is None


def sees_flag(user: Account, team: str) -> bool:
    """Whether `user` may see a drawdown flag of `team` to assign coaching from it."""
    return user.role == "admin" or (user.role == "director" and bool(team) and team in user.teams)


def unknown_assignment(assignment_id: str) -> str:
    """The answer to an assignment id that does not exist, or that the asker may not see."""
    return f"no coaching assignment {assignment_id}"


def require_assign(user: Account, *, manager: str, team: str) -> None:
    """Who may assign coaching to `manager` (in `team`, "" for none). A director asking about a
    manager outside the teams they lead gets NotFound (404), as for a manager who does not exist:
    the answer never says which team the manager is in. Other roles never assign (403)."""
    if user.role == "director" and not user.disabled and not (team and team in user.teams):
        raise NotFound(f"no manager {manager} in a team {user.name} leads ({_led(user)})")
    require(user, "assign", team=team)


def can(user: Account, action: str, assignment: CoachingAssignment | None = None, *,
        team: str | None = None) -> bool:
    return refusal(user, action, assignment, team=team) is None


def visible(user: Account, assignments: Iterable[CoachingAssignment]) -> list[CoachingAssignment]:
    """The assignments `user` may see."""
    return [a for a in assignments if can(user, "view", a)]


def _view(user: Account, a: CoachingAssignment, who: str) -> Refusal | None:
    if user.role == "director":
        return _leads(user, a, who)
    if user.role == "trainer":
        if a.mentor == user.name:
            return None
        return Refusal(f"{who} sees only what is assigned to them (this is {a.mentor or 'nobody'}'s)",
                       "not_your_trainee")
    if user.role == "manager":
        if user.manager_id and user.manager_id == a.manager:
            return None
        return Refusal(f"{who} sees only their own coaching", "not_yours")
    return Refusal(f"{who} has no access to coaching", "no_access")


def _leads(user: Account, a: CoachingAssignment, who: str) -> Refusal | None:
    if a.team and a.team in user.teams:
        return None
    return Refusal(f"{who} does not lead team {a.team or '-'} ({_led(user)})", "not_your_team", team=a.team)


def _trainer_only(who: str, a: CoachingAssignment, does: str, action: str) -> Refusal:
    if not a.mentor:
        return Refusal(f"{who} cannot do that: this self-paced course has no trainer", f"{action}_no_trainer")
    return Refusal(f"{who} cannot do that: the trainer {a.mentor} {does}", f"{action}_trainer", mentor=a.mentor)


def _led(user: Account) -> str:
    return f"leads {', '.join(user.teams)}" if user.teams else "leads no team"


def _what(a: CoachingAssignment) -> str:
    return "a mentor meeting" if a.kind == "mentor_meeting" else "a course led by a trainer"
