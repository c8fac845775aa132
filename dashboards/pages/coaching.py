"""Coaching: the board (assignments by state and due date), one assignment with its history, its
evaluations and a before/after chart, the assign form (usually opened from a drawdown flag), the
catalog of courses and mentors, effectiveness per course and mentor, and failed notifications.

Every rule lives in coaching/ (states, permissions, measurement); this module only reads forms and
shows results. Each route has its JSON twin under /api/v1, which is the integration API for an LMS
or HR system (listed in /openapi.json).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np
from aiohttp import web

import coaching
from coaching import _store, outbox, peers, permissions, planning, pooling
from coaching import assignments as coached
from coaching.evaluation import PRE_DAYS, Criteria
from coaching.lifecycle import MAX_NOTE_CHARS, MAX_WINDOW_DAYS, MIN_WINDOW_DAYS, STATES
from dashboards import access, charts
from dashboards.auth import Viewer
from dashboards.i18n import Translator, catalog
from dashboards.web import (
    ALL_ROLES,
    DONE,
    SITE,
    Page,
    Param,
    add_action,
    add_page,
    answer,
    choice,
    chosen_site,
    day,
    flag,
    moment,
    names,
    number,
    run,
    text,
    uuid_id,
    whole,
)
from kernel import app_keys, band_versions, flag_store, processes, storage, teams, users
from kernel import managers as directory
from kernel.errors import InvalidInput, NotFound, StepwatchError

LEADS = ("admin", "director")


@dataclass(frozen=True)
class Words:
    """What people read instead of ids: managers' names, steps' and courses' titles (each None-free:
    an id missing here is shown as itself)."""

    managers: dict[str, str]
    steps: dict[str, str]
    courses: dict[str, str]

    def of(self, a: coaching.CoachingAssignment) -> dict[str, Any]:
        """An assignment's names beside its ids, for the pages and their JSON twins."""
        return {"manager_name": self.managers.get(a.manager), "step_title": self.steps.get(a.step, a.step),
                "course_title": self.courses.get(a.course_id, a.course_id) if a.course_id else None}


def words_of(client: Any, site: str) -> Words:
    if not site:
        return Words({}, {}, {})
    process = processes.latest(client, site)
    return Words(directory.names(client, site), {s.key: s.title for s in process.steps} if process else {},
                 {c.course_id: c.title for c in coaching.list_courses(client, site, include_retired=True)})


# --- pages -------------------------------------------------------------------------------------------------


#: the board's state filter: one state, or "open" for all three before the evaluation
BOARD_STATES = ("open", *STATES)


async def board(request: web.Request, who: Viewer) -> Page:
    site, site_names = await chosen_site(request)
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in BOARD_STATES:
        raise InvalidInput(f"state must be one of {', '.join(BOARD_STATES)}", field="state")
    under_way = state == "open"  # assigned, scheduled or done: what the overview counts as under way
    found = await run(request, coaching.list_assignments, site, who.user, state=None if under_way else state,
                      open_only=under_way, manager=q.get("manager") or None, step=q.get("step") or None,
                      team=q.get("team") or None, mentor=q.get("mentor") or None) if site else []
    waiting_total = sum(a.unanswered for a in found)
    waiting = q.get("waiting", "").lower() in ("1", "true", "on", "yes")
    if waiting:
        found = [a for a in found if a.unanswered]
    words = await run(request, words_of, site)
    rows = [_row(a, words) for a in found]
    choices = await run(request, _board_choices, site, who.user, words) if site else {}
    failed = []
    if who.role in LEADS and site:
        failed = [_message(m) for m in await run(request, _failed_notifications, site, who.user)]
    today = datetime.now(UTC).date()
    for r in rows:
        r["overdue"] = r["open"] and r["due"] < today
    data = {"site": site, "filters": {**{k: q.get(k, "") for k in ("state", "manager", "step", "team", "mentor")},
                                      "waiting": waiting},
            "choices": choices, "assignments": rows, "failed_notifications": failed,
            "questions_waiting": waiting_total if who.role != "manager" else 0,
            "overdue": sum(1 for r in rows if r["overdue"])}
    return Page("coaching_board.html", data, title="coaching.board_title", table="assignments",
                columns=["assignment_id", "state", "manager", "manager_name", "team", "step", "step_title", "kind",
                         "course_id", "course_title", "mentor", "due", "overdue",
                         "scheduled_for", "verdict", "target_met", "relative_effect_pct", "acknowledged_at",
                         "unanswered", "flag_id"],
                context={"sites": site_names, "states": BOARD_STATES, "today": today,
                         "can_assign": who.role in LEADS})


async def assignment_page(request: web.Request, who: Viewer) -> Page:
    assignment_id = request.match_info["assignment_id"]
    settings = request.app[app_keys.SETTINGS]
    a = await run(request, coaching.get, assignment_id, who.user)
    evaluations = await run(request, coaching.evaluations, a.assignment_id, who.user)
    picture = await run(request, coaching.before_after, settings, a.assignment_id, who.user)
    scope = await run(request, access.scope_of, who.user, a.site)
    moves = coaching.actions(who.user, a)
    shown = _peers_shown(scope, settings.peer_group_min, a, picture.as_dict())
    words = await run(request, words_of, a.site)
    _ = Translator(who.user.language)
    step_title = words.steps.get(a.step, a.step)
    shown_evaluations = [_evaluation_shown(scope, settings.peer_group_min, e.as_dict()) for e in evaluations]
    for e in shown_evaluations:
        e["result"] = result_sentence(_, step_title, e)
    data = {"assignment": {**a.as_dict(), **words.of(a)}, "evaluations": shown_evaluations,
            "result": shown_evaluations[-1]["result"] if shown_evaluations else None,
            "before_after": shown, "actions": sorted(moves.allowed), "refused": moves.refused,
            "refused_codes": {move: f"refusal_{why.code}" for move, why in moves.refused.items()}}
    def move_said(move: str) -> str:  # a meeting already set is moved, not scheduled
        return _("coaching.move_reschedule" if move == "schedule" and a.scheduled_for else f"coaching.move_{move}")

    refused_said = [(move_said(move), said(_, f"refusal_{why.code}", why.values))
                    for move, why in sorted(moves.refused.items()) if move not in ("ask", "acknowledge")]
    drawn = {"label": f"{directory.display(words.managers, a.manager)} · {words.steps.get(a.step, a.step)}",
             "days": picture.days, "manager_ms": picture.manager_ms, "peers_ms": tuple(shown["peers_ms"]),
             "pre": picture.pre, "post": picture.post, "target_ms": picture.target_ms,
             "band_max_ms": picture.band_max_ms, "trigger": picture.trigger}
    chart = charts.before_after(_, **drawn, width=880, height=230)
    chart_narrow = charts.before_after(_, **drawn, width=380, height=220)  # a phone's: drawn to fit, not shrunk
    return Page("coaching_assignment.html", data, title="coaching.assignment_title", table="evaluations",
                columns=["checkpoint", "evaluated_at", "pre_since", "pre_until", "post_since", "post_until", "verdict",
                         "target_met"],
                context={"chart": chart, "chart_narrow": chart_narrow,
                         "now_local": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                         "max_note_chars": MAX_NOTE_CHARS, "own": who.role == "manager",
                         "refused_said": refused_said})


def said(_: Translator, code: str, values: dict[str, str]) -> str:
    """A coaching error code (coaching/permissions.py, lifecycle.py, assignments.py) in the reader's words."""
    return _(f"coaching.{code}", **values)


def speaking(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The handler, its coded errors worded in the account's language: the page, the form's message and the
    JSON `error` read the same, and the JSON keeps the machine-readable `code` (stepwatch/app.py)."""

    @functools.wraps(handler)
    async def worded(request: web.Request, who: Viewer, *args: Any) -> Any:
        try:
            return await handler(request, who, *args)
        except StepwatchError as exc:
            if not exc.code or f"coaching.{exc.code}" not in catalog():
                raise
            words = said(Translator(who.user.language), exc.code, exc.values)
            raise type(exc)(words, field=exc.field, code=exc.code, values=exc.values) from exc

    return worded


def result_sentence(_: Translator, step_title: str, evaluation: dict[str, Any]) -> str:
    """An evaluation in one sentence in the reader's language: "Time on Offer fell from 5.1 to 3.9 min
    (-24%), while peers changed -2%: improved, confident"."""
    f = evaluation["figures"]
    verdict = _("coaching.result_verdict_" + evaluation["verdict"])
    before, after, change = f.get("pre_median_ms"), f.get("post_median_ms"), f.get("change_pct")
    if before is None or after is None or change is None:
        return _("coaching.result_no_data", step=step_title, verdict=verdict)
    key = ("coaching.result_held" if _.minutes(before) == _.minutes(after)  # never "fell from 4.7 to 4.7 min"
           else "coaching.result_fell" if change < -0.5 else "coaching.result_rose" if change > 0.5
           else "coaching.result_held")
    moved = _(key, step=step_title, before=_.minutes(before), after=_.minutes(after),
              change=signed_pct(_, change))
    if f.get("peer_group") == "too_small" or f.get("peers_change_pct") is None:
        peers_said = _("coaching.result_no_peers")
    else:
        peers_said = _("coaching.result_peers", change=signed_pct(_, f["peers_change_pct"]))
    return _("coaching.result", moved=moved, peers=peers_said, verdict=verdict)


#: (translator, pct) -> "−24%": the Translator's own, for the sentences above
signed_pct = Translator.signed_pct


async def new_assignment(request: web.Request, who: Viewer) -> Page:
    """The assign form; `?flag=` fills it from a drawdown flag, `?manager=&step=` from a page, and the
    form's own fields (its "check the plan" button) fill it again with the plan for them."""
    site, site_names = await chosen_site(request)
    q = request.query
    prefill: dict[str, Any] = {"manager": q.get("manager", ""), "step": q.get("step", ""), "flag_id": "",
                               "kind": q.get("kind") or "mentor_meeting", "target_minutes": q.get("target_minutes", ""),
                               "within_days": q.get("within_days") or 28, "course_id": q.get("course_id", ""),
                               "mentor": q.get("mentor", ""), "course_trainer": q.get("course_trainer", ""),
                               "due": q.get("due", ""), "note": q.get("note", ""),
                               "pre_days": int(float(q.get("pre_days") or PRE_DAYS)),
                               "post_days": int(float(q.get("post_days") or 14))}
    flag_id = q.get("flag") or q.get("flag_id")
    if flag_id:
        flag = await run(request, flag_store.get, flag_id)
        if not permissions.sees_flag(who.user, flag.team):
            raise NotFound(f"no flag {flag_id}")  # as for a flag that does not exist
        site = flag.site
        prefill.update(manager=flag.manager, step=flag.step, flag_id=flag.flag_id,
                       target_minutes=prefill["target_minutes"] or round(flag.reference_ms / 60_000, 1),
                       flag={"kind": flag.kind, "minutes_lost_per_week": round(flag.minutes_lost_per_week),
                             "start_date": flag.start_date, "start_at_least": flag.start_at_least})
    if not prefill["target_minutes"] and prefill["step"]:
        bands = await run(request, band_versions.versions, site, prefill["step"])
        if bands:
            prefill["target_minutes"] = round(bands[-1].reference_ms / 60_000, 1)
    settings = request.app[app_keys.SETTINGS]
    target_ms = _target_ms(prefill["target_minutes"])

    async def nothing() -> None:
        return None

    # the plan (a read of a team's sessions: most of the page's time) while the catalog and the
    # pooled effects are read, each in a worker of its own
    planned = site and prefill["manager"] and prefill["step"]
    plan, catalog, pooled = await asyncio.gather(
        run(request, plan_for, settings, site, prefill["manager"], prefill["step"], target_ms,
            prefill["pre_days"], prefill["post_days"]) if planned else nothing(),
        run(request, _catalog, site, prefill["step"] or None, who.user),
        run(request, pooled_effects, site, who.user) if site and prefill["step"] else nothing())
    coaches = [m["name"] for m in catalog["mentors"] if prefill["step"] and prefill["step"] in m["steps"]]
    recommended, evaluated_on_step, no_recommendation = None, None, None
    if pooled is not None:
        pick = pooling.best(pooled, prefill["step"])
        recommended = pick.as_dict() if pick else None
        if recommended:
            words = await run(request, words_of, site)
            recommended["title"] = words.courses.get(pick.key, pick.key) if pick.by == "course" else pick.key
        on_step = [p for p in pooled if p.step == prefill["step"]]
        evaluated_on_step = sum(p.assignments for p in on_step)
        if not pick:  # the form says why: nothing evaluated, too few effects to pool, or none a gain
            no_recommendation = ("nothing_evaluated" if not evaluated_on_step else
                                 "no_gain" if any(p.pooled_ci_pct for p in on_step) else "too_few")
    data = {"site": site, "prefill": prefill, **catalog, "only_mentor": coaches[0] if len(coaches) == 1 else "",
            "due_default": (datetime.now(UTC).date() + timedelta(days=7)).isoformat(), "planning": plan,
            "recommended": recommended, "evaluated_on_step": evaluated_on_step,
            "no_recommendation": no_recommendation}
    _ = Translator(who.user.language)
    return Page("coaching_new.html", data, title="coaching.new_title",
                context={"sites": site_names, "min_window": MIN_WINDOW_DAYS, "max_window": MAX_WINDOW_DAYS,
                         "plan_link": _plan_link(site, prefill, plan)})


HISTORY_DAYS = 28  # the recent history a plan reads each person's volume and spread from


def plan_for(client: Any, settings: Any, site: str, manager: str, step: str, target_ms: int | None,
             pre_days: int, post_days: int, today: date | None = None) -> dict[str, Any] | None:
    """The plan for an assignment of `manager` on `step` (coaching/planning.py), from the last
    HISTORY_DAYS of sessions of the manager and of the peers the evaluation would compare with
    (their team, else the site); None when the manager is in no team."""
    today = today or datetime.now(UTC).date()
    members = teams.members(client, site)
    team = members.get(manager)
    if not team:
        return None
    since = today - timedelta(days=HISTORY_DAYS)
    storage.refresh_session_steps(client, site)
    criteria = Criteria()

    def times_of(names: set[str]) -> dict[str, Any]:
        # only these managers' sessions, as a day's times per row (storage.pair_day_times): a team's are
        # an eighth of a site's, and on a cluster they all travel to the node asked
        return {p.manager: p for p in storage.pair_day_times(client, site, since, today, settings.analysis_metric,
                                                             step=step, managers=sorted(names | {manager}))}

    def usable(pairs: dict[str, Any], names: set[str]) -> list[Any]:
        return [pairs[m] for m in sorted(names) if m in pairs and m != manager
                and pairs[m].times_ms.size * min(pre_days, post_days) / HISTORY_DAYS >= criteria.min_peer_sessions]

    team_members = {m for m, t in members.items() if t == team}
    pairs = times_of(team_members)
    chosen, scope = usable(pairs, team_members), "team"
    if not chosen:  # nobody in the team to compare with: the site's managers
        pairs = times_of(set(members))
        chosen, scope = usable(pairs, set(members)), "site"
    own = pairs.get(manager)
    times = own.times_ms if own is not None else np.empty(0)
    manager_volume = planning.volume(times, HISTORY_DAYS)
    found = [own, *chosen] if own is not None else chosen
    days = planning.day_effects([(p.times_ms, p.days) for p in found], days_seen=HISTORY_DAYS)
    median = float(np.median(times)) if times.size else None
    change = 1 - target_ms / median if target_ms and median else None
    plan = planning.plan_windows(manager_volume, [planning.volume(p.times_ms, HISTORY_DAYS) for p in chosen],
                                 pre_days=pre_days, post_days=post_days,
                                 target_change=change if change is not None and change > 0 else None,
                                 days=days, criteria=criteria)
    return {**plan.as_dict(), "history_days": HISTORY_DAYS, "sessions_seen": manager_volume.sessions_seen,
            "sessions_per_fortnight": manager_volume.sessions(14), "median_ms": median, "target_ms": target_ms,
            "target_already_met": bool(target_ms and median and median <= target_ms), "peer_scope": scope,
            "power": planning.POWER, "alpha": criteria.alpha, "longest_window": MAX_WINDOW_DAYS,
            "min_sessions": criteria.min_sessions}


def pooled_effects(client: Any, site: str, user: Any) -> list[pooling.Pooled]:
    """Every course's and mentor's effect per step, pooled (coaching/pooling.py), over the evaluated
    assignments `user` may see, each with the standard error its evaluation's interval implies."""
    evaluated = coaching.list_assignments(client, site, user, state="evaluated")
    if not evaluated:
        return []
    intervals = {e.assignment_id: e.figures.get("relative_effect_ci_pct")
                 for e in _store.evaluations(client, site=site) if e.checkpoint == 0}
    outcomes = []
    for a in evaluated:
        error = pooling.Outcome.error_of(intervals.get(a.assignment_id))
        for by, key in (("course", a.course_id), ("mentor", a.mentor)):
            if key:
                outcomes.append(pooling.Outcome(a.step, by, key, a.verdict or "insufficient_data",
                                                a.relative_effect_pct, error))
    return pooling.pool(outcomes)


def _plan_link(site: str, prefill: dict[str, Any], plan: dict[str, Any] | None) -> str:
    """The form again with the windows the plan suggests, and a deadline that leaves room for them."""
    days = plan.get("days_to_verdict") if plan else None
    if not days or days > MAX_WINDOW_DAYS:
        return ""
    today = datetime.now(UTC).date()
    due = prefill["due"] or (today + timedelta(days=7)).isoformat()
    try:
        needed = (date.fromisoformat(str(due)) - today).days + days
    except ValueError:
        needed = 7 + days
    kept = {k: str(v) for k, v in prefill.items() if k in PLAN_FIELDS and str(v or "").strip()}
    kept.update(site=site, pre_days=str(max(prefill["pre_days"], days)), post_days=str(days),
                within_days=str(max(int(float(prefill["within_days"] or 0)), needed)))
    return "/coaching/new?" + urlencode(kept)


def _target_ms(minutes: Any) -> int | None:
    try:
        value = float(str(minutes).replace(",", "."))
    except ValueError:
        return None
    return int(round(value * 60_000)) if value > 0 else None


async def catalog_page(request: web.Request, who: Viewer) -> Page:
    site, site_names = await chosen_site(request)
    data = {"site": site, **(await run(request, _catalog, site, None, who.user) if site else {
        "courses": [], "mentors": [], "steps": [], "step_titles": {}, "trainers": [], "managers": [],
        "manager_names": {}})}
    return Page("coaching_catalog.html", data, title="coaching.catalog_title", table="courses",
                context={"sites": site_names, "can_edit_courses": who.role in ("admin", "director", "trainer"),
                         "can_edit_mentors": who.role in LEADS})


async def effectiveness_page(request: web.Request, who: Viewer) -> Page:
    site, site_names = await chosen_site(request)
    by_course = await run(request, coaching.effectiveness_by, site, who.user, by="course") if site else []
    by_mentor = await run(request, coaching.effectiveness_by, site, who.user, by="mentor") if site else []
    pooled = await run(request, pooled_effects, site, who.user) if site else []
    words = await run(request, words_of, site)

    def title(by: str, key: str) -> str:  # a course by its title (its id where the catalog lost it), a mentor by name
        return words.courses.get(key, key) if by == "course" else key

    rows = [{**r.as_dict(), "title": title(r.by, r.key)} for r in [*by_course, *by_mentor]]
    ranked = [{**p.as_dict(), "title": title(p.by, p.key), "step_title": words.steps.get(p.step, p.step)}
              for p in pooled]
    return Page("coaching_effectiveness.html", {"site": site, "rows": rows, "pooled": ranked},
                title="coaching.effectiveness_title", table="pooled",
                context={"sites": site_names})


CHARTED = 3  # before/after charts on a manager page: the latest coaching that has an "after"


def history(client: Any, settings: Any, user: Any, site: str, manager: str) -> list[dict[str, Any]]:
    """A manager's coaching, newest first, for the manager page and My figures: each assignment the
    viewer may see, with its before/after data when it is done or evaluated (the latest few)."""
    found = coaching.list_assignments(client, site, user, manager=manager) if site else []
    found = sorted(found, key=lambda a: a.assigned_at, reverse=True)
    scope = access.scope_of(client, user, site) if found else None
    words = words_of(client, site) if found else Words({}, {}, {})
    rows, charted = [], 0
    for a in found:
        row = {**_row(a, words), "assigned_at": a.assigned_at, "before_after": None}
        if a.state in ("done", "evaluated") and charted < CHARTED:
            picture = coaching.before_after(client, settings, a.assignment_id, user).as_dict()
            row["before_after"] = _peers_shown(scope, settings.peer_group_min, a, picture)  # type: ignore[arg-type]
            charted += 1
        rows.append(row)
    return rows


def history_charts(_: Translator, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The before/after chart of each charted assignment, by assignment id."""
    drawn = {}
    for row in rows:
        picture = row["before_after"]
        if picture is None:
            continue
        days = [date.fromisoformat(d) for d in picture["days"]]
        pre = tuple(date.fromisoformat(d) for d in picture["pre"])
        post = tuple(date.fromisoformat(d) for d in picture["post"]) if picture.get("post") else None
        trigger = tuple(date.fromisoformat(d) for d in picture["trigger"]) if picture.get("trigger") else None
        drawn[row["assignment_id"]] = charts.before_after(
            _, label=f"{row['manager_name'] or row['manager']} · {row['step_title']}", days=days,
            manager_ms=picture["manager_ms"],
            peers_ms=picture["peers_ms"], pre=pre, post=post, target_ms=picture["target_ms"],
            band_max_ms=picture["band_max_ms"], trigger=trigger, width=560, height=170)
    return drawn


def _board_choices(client: Any, site: str, user: users.User, words: Words) -> dict[str, Any]:
    """What the board's filters choose from: the managers, teams and mentors of the assignments
    `user` sees (a filter offers nobody they may not see), the process's steps by title, the
    catalog's mentors."""
    seen = coaching.list_assignments(client, site, user)
    managers = sorted({a.manager for a in seen}, key=lambda m: (directory.display(words.managers, m).casefold(), m))
    mentors = sorted({a.mentor for a in seen if a.mentor}
                     | ({m.name for m in coaching.list_mentors(client, site)} if user.role in LEADS else set()))
    return {"managers": [{"value": m, "label": directory.display(words.managers, m)} for m in managers],
            "steps": [{"value": k, "label": t} for k, t in words.steps.items()],
            "teams": sorted({a.team for a in seen if a.team}), "mentors": mentors, "states": list(STATES)}


def _catalog(client: Any, site: str, step: str | None, user: users.User) -> dict[str, Any]:
    """The catalog and what the assign form picks from; `managers` are only those `user` may see."""
    process = processes.latest(client, site)
    courses = [c.as_dict() for c in coaching.list_courses(client, site, step=step)]
    mentors = [m.as_dict() for m in coaching.list_mentors(client, site, step=step)]
    trainers = [u.name for u in users.list_users(client) if u.role == "trainer" and not u.disabled]
    scope = access.scope_of(client, user, site)
    known = directory.names(client, site)
    visible = sorted((m for m in scope.team_of if scope.sees_manager(m)),
                     key=lambda m: (directory.display(known, m).casefold(), m))
    return {"courses": courses, "mentors": mentors, "trainers": trainers,
            "steps": [s.key for s in process.steps] if process else [],
            "step_titles": {s.key: s.title for s in process.steps} if process else {},
            "managers": visible, "manager_names": {m: known[m] for m in visible if m in known}}


def _peers_shown(scope: access.Scope, min_group: int, a: coaching.CoachingAssignment,
                 picture: dict[str, Any]) -> dict[str, Any]:
    """A before/after chart's data as the viewer may see it: the chart's peers are the rest of the
    assignment's team, so they are shown as they are to whoever sees that team (coaching/peers.py)."""
    return peers.before_after(picture, named=scope.sees_team(a.team), min_group=min_group)


def _evaluation_shown(scope: access.Scope, min_group: int, evaluation: dict[str, Any]) -> dict[str, Any]:
    """A stored evaluation as the viewer may see it: the peers by name only to whoever sees each of them."""
    figures = evaluation["figures"]
    named = all(scope.sees_manager(m) for m in figures.get("peers") or [])
    return {**evaluation, "figures": peers.evaluation_figures(figures, named=named, min_group=min_group)}


def _failed_notifications(client: Any, site: str, user: users.User) -> list[outbox.OutboxMessage]:
    """The site's notifications that failed for good, about assignments `user` may see."""
    seen = {a.assignment_id for a in coaching.list_assignments(client, site, user)}
    return [m for m in outbox.messages(client, site=site, status="failed", limit=200) if m.object in seen][:20]


def _retry(client: Any, message_id: str, user: users.User) -> outbox.OutboxMessage:
    """Retry a failed notification about an assignment `user` may see; any other is NotFound, as
    for an id that does not exist."""
    message = outbox.get(client, message_id)
    try:
        coaching.get(client, message.object, user)
    except NotFound:
        raise NotFound(f"no outbox message {message_id}") from None
    return outbox.retry(client, message_id)


def _row(a: coaching.CoachingAssignment, words: Words) -> dict[str, Any]:
    return {"assignment_id": a.assignment_id, "state": a.state, "open": a.is_open, "manager": a.manager,
            **words.of(a), "team": a.team, "step": a.step, "kind": a.kind, "course_id": a.course_id, "mentor": a.mentor,
            "due": a.due, "scheduled_for": a.scheduled_for, "verdict": a.verdict, "target_met": a.target_met,
            "relative_effect_pct": a.relative_effect_pct, "flag_id": a.flag_id, "acknowledged_at": a.acknowledged_at,
            "unanswered": a.unanswered}


def _message(m: outbox.OutboxMessage) -> dict[str, Any]:
    return {"message_id": m.message_id, "topic": m.topic, "object": m.object, "created_at": m.created_at,
            "attempts": m.attempts, "last_error": m.last_error}


# --- actions -----------------------------------------------------------------------------------------------


PLAN_FIELDS = ("site", "manager", "step", "kind", "course_id", "mentor", "course_trainer", "due", "target_minutes",
               "within_days", "note", "flag_id", "pre_days", "post_days")


async def assign(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    settings = request.app[app_keys.SETTINGS]
    if str(fields.get("check_plan", "")).lower() in ("1", "true", "on", "yes"):
        if request.path.startswith("/api/") or request.content_type not in ("application/x-www-form-urlencoded",
                                                                             "multipart/form-data"):
            raise InvalidInput("check_plan is the form's button; the plan is GET /api/v1/coaching/new with the same "
                               "fields", field="check_plan")
        # the form again with its values and the plan for them (a POST, so that the form's token stays out of URLs)
        kept = {k: str(fields[k]) for k in PLAN_FIELDS if str(fields.get(k, "") or "").strip()}
        return {"redirect": "/coaching/new?" + urlencode(kept),
                "message": Translator(who.user.language)("coaching.plan_checked")}
    site = await _site(request, fields)
    minutes = _number(fields.get("target_minutes"), "target_minutes")
    target = coaching.Target(max_ms=int(round(minutes * 60_000)), within_days=_integer(fields.get("within_days"),
                                                                                      "within_days"))
    kind = _text(fields, "kind")
    # The form has a part per kind (both are sent without JavaScript): only the chosen kind's fields
    # count. A course's trainer is `course_trainer` on the form, `mentor` in JSON.
    course_id = str(fields.get("course_id", "") or "") if kind == "course" else ""
    mentor = str(fields.get("course_trainer" if kind == "course" and "course_trainer" in fields else "mentor", "")
                 or "")
    a = await run(request, lambda client: coaching.assign(
        client, settings, who.user, site=site, manager=_text(fields, "manager"), step=_text(fields, "step"),
        kind=kind, due=_day(fields.get("due"), "due"), target=target, course_id=course_id, mentor=mentor,
        note=str(fields.get("note", "") or ""), flag_id=str(fields.get("flag_id", "") or ""),
        pre_days=_integer(fields.get("pre_days", PRE_DAYS), "pre_days"),
        post_days=_integer(fields.get("post_days", 14), "post_days")))
    return {"assignment": a.as_dict(), "redirect": f"/coaching/assignments/{a.assignment_id}",
            "message": Translator(who.user.language)("coaching.assigned")}


async def schedule(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    when = _moment(fields.get("meeting_at"), "meeting_at")  # seconds are allowed: a meeting in a minute
    return await _move(request, who, coaching.schedule, when, reason=str(fields.get("reason", "") or ""))


async def done(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    return await _move(request, who, coaching.mark_done, note=str(fields.get("note", "") or ""))


async def cancel(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    reason = str(fields.get("reason", "") or "").strip()
    if not reason:
        raise InvalidInput("say why the coaching is cancelled", field="reason", code="form_cancel_reason")
    return await _move(request, who, coaching.cancel, reason=reason)


async def evaluate(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    settings = request.app[app_keys.SETTINGS]
    assignment_id = request.match_info["assignment_id"]
    stored = await run(request, coaching.evaluate_assignment, settings, assignment_id, who.user)
    scope = await run(request, access.scope_of, who.user, stored.site)
    return {"evaluation": _evaluation_shown(scope, settings.peer_group_min, stored.as_dict()),
            "message": Translator(who.user.language)("coaching.evaluated", verdict=stored.verdict)}


async def acknowledge(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    return {**await _move(request, who, coached.acknowledge),
            "message": Translator(who.user.language)("coaching.acknowledged_ok")}


async def ask(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    return {**await _move(request, who, coached.ask, _note(fields, "text")),
            "message": Translator(who.user.language)("coaching.asked_ok")}


async def answer_question(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    return {**await _move(request, who, coached.answer, _text(fields, "question_id"), _note(fields, "text")),
            "message": Translator(who.user.language)("coaching.answered_ok")}


def _note(fields: dict[str, Any], name: str) -> str:
    value = _text(fields, name)
    if len(value) > MAX_NOTE_CHARS:
        raise InvalidInput(f"{name} is at most {MAX_NOTE_CHARS} characters (got {len(value)})", field=name)
    return value


async def _move(request: web.Request, who: Viewer, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    settings = request.app[app_keys.SETTINGS]
    a = await run(request, fn, settings, who.user, request.match_info["assignment_id"], *args, **kwargs)
    _ = Translator(who.user.language)
    return {"assignment": a.as_dict(), "message": _("coaching.state_now", state=_("coaching.state_" + a.state))}


async def add_course(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    site = await _site(request, fields)
    steps = await _steps(request, fields)
    course = await run(request, lambda client: coaching.add_course(
        client, who.user, site=site, title=_text(fields, "title"), steps=steps,
        description=str(fields.get("description", "") or ""), link=str(fields.get("link", "") or ""),
        expected_minutes=_integer(fields.get("expected_minutes", 0) or 0, "expected_minutes"),
        self_paced=str(fields.get("self_paced", "")).lower() in ("1", "true", "on", "yes"),
        reason=str(fields.get("reason", "") or "")))
    return {"course": course.as_dict(), "message": Translator(who.user.language)("coaching.course_saved")}


async def set_mentor(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    site = await _site(request, fields)
    steps = await _steps(request, fields)
    mentor = await run(request, lambda client: coaching.set_mentor(
        client, who.user, site=site, name=_text(fields, "name"), steps=steps,
        reason=str(fields.get("reason", "") or "")))
    return {"mentor": mentor.as_dict(), "message": Translator(who.user.language)("coaching.mentor_saved")}


async def retry_notification(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    message = await run(request, _retry, request.match_info["message_id"], who.user)
    return {"message_id": message.message_id, "status": message.status,
            "message": Translator(who.user.language)("coaching.retry_queued")}


# --- reading form fields -----------------------------------------------------------------------------------


async def _site(request: web.Request, fields: dict[str, Any]) -> str:
    """The form's site, else the one the page shows (the only site, or the first)."""
    site = str(fields.get("site", "") or "").strip()
    if site:
        return site
    site, _names = await chosen_site(request)
    if not site:
        raise InvalidInput("name the site: site=...", field="site")
    return site


def _text(fields: dict[str, Any], name: str) -> str:
    value = str(fields.get(name, "") or "").strip()
    if not value:
        raise InvalidInput(f"{name} is required", field=name, code="form_required")
    return value


async def _steps(request: web.Request, fields: dict[str, Any]) -> list[str]:
    """The steps a form ticked (one `steps` field per checkbox), or a JSON list, or "a, b" text."""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        ticked = [str(v) for v in (await request.post()).getall("steps", [])]
        if len(ticked) > 1:
            return _list(ticked)
    return _list(fields.get("steps"))


def _list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _number(value: Any, name: str) -> float:
    try:
        number = float(str(value).replace(",", "."))
    except ValueError:
        raise InvalidInput(f"{name} must be a number", field=name, code="form_bad_number") from None
    if not number > 0:
        raise InvalidInput(f"{name} must be more than 0", field=name, code="form_not_positive")
    return number


def _integer(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number", field=name, code="form_bad_whole") from None


def _day(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{name} must be a date like 2026-12-01", field=name, code="form_bad_day") from None


def _moment(value: Any, name: str) -> datetime:
    """A date and time from a form (taken as UTC, as the form says) or ISO 8601 with an offset from JSON."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{name} must be a date and time like 2026-12-01T14:30", field=name,
                           code="form_bad_moment") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def register(app: web.Application) -> None:
    from coaching.lifecycle import KINDS

    one = (Param("assignment_id", "assignment_id", "the assignment's id, or its first 6 characters or more",
                 required=True),)
    add_page(app, "/coaching", speaking(board), roles=ALL_ROLES, name="coaching", query=(
        SITE, choice("state", BOARD_STATES, "open: every assignment not yet evaluated nor cancelled"), text("manager"),
        text("step"), text("team"), text("mentor"),
        flag("waiting", "only assignments with a manager's question waiting for an answer")),
             response=answer(site="string", filters="object", choices="object", assignments="array",
                             failed_notifications="array", overdue="integer", questions_waiting="integer"))
    add_page(app, "/coaching/new", speaking(new_assignment), roles=LEADS, name="coaching_new", query=(
        SITE, uuid_id("flag", "fill the form from this drawdown flag"), text("manager"), text("step"),
        choice("kind", KINDS), text("course_id"), text("mentor"), text("course_trainer"), day("due"),
        number("target_minutes", 0, 1440, "the target the plan is for: the step's median at most this many minutes"),
        whole("within_days", 0, 3650), text("note"), uuid_id("flag_id", "as flag (the form's own field)"),
        whole("pre_days", MIN_WINDOW_DAYS, MAX_WINDOW_DAYS, f"the baseline the plan is for (default {PRE_DAYS})"),
        whole("post_days", MIN_WINDOW_DAYS, MAX_WINDOW_DAYS, "the window after the plan is for (default 14)")),
             response=answer(site="string", prefill="object", courses="array", mentors="array", trainers="array",
                             steps="array", step_titles="object", managers="array", manager_names="object",
                             due_default="string", planning="object?", recommended="object?",
                             evaluated_on_step="integer?", no_recommendation="string?"))
    add_page(app, "/coaching/catalog", speaking(catalog_page), roles=("admin", "director", "trainer"),
             name="coaching_catalog",
             query=(SITE,), response=answer(site="string", courses="array", mentors="array", trainers="array",
                                            steps="array", step_titles="object", managers="array",
                                            manager_names="object"))
    add_page(app, "/coaching/effectiveness", speaking(effectiveness_page), roles=("admin", "director", "trainer"),
             name="coaching_effectiveness", query=(SITE,), response=answer(site="string", rows="array",
                                                                           pooled="array"))
    add_page(app, "/coaching/assignments/{assignment_id}", speaking(assignment_page), roles=ALL_ROLES,
             name="coaching_assignment", path_params=one,
             response=answer(assignment="object", evaluations="array", before_after="object", actions="array",
                             refused="object", refused_codes="object"))
    moved = answer(assignment="object", **DONE)
    add_action(app, "/coaching/assign", speaking(assign), roles=LEADS, name="coaching_assign", query=(SITE,), body=(
        text("site", "default: the only site"), text("manager", required=True), text("step", required=True),
        choice("kind", KINDS, required=True),
        day("due", "when the coaching is due", required=True),
        number("target_minutes", 0, 1440, "the target: the step's median at most this many minutes", required=True),
        whole("within_days", 0, 3650, "the target's deadline, in days after the assignment", required=True),
        text("course_id", "a course (kind course)"), text("mentor", "the mentor or the course's trainer"),
        text("course_trainer", "the form's trainer of a course (JSON: mentor)"),
        text("note"), uuid_id("flag_id", "the drawdown flag this answers"),
        whole("pre_days", 0, 3650, f"days of the baseline before the fortnight that prompted it (default {PRE_DAYS})"),
        whole("post_days", 0, 3650, "days measured after (default 14)"),
        flag("check_plan", "the form's 'check the plan' button: the form again with the plan for these values, "
                           "nothing assigned")), response=moved)
    add_action(app, "/coaching/assignments/{assignment_id}/schedule", speaking(schedule), roles=ALL_ROLES,
               name="coaching_schedule", path_params=one,
               body=(moment("meeting_at", "when (UTC unless an offset is given)", required=True), text("reason")),
               response=moved)
    add_action(app, "/coaching/assignments/{assignment_id}/done", speaking(done), roles=ALL_ROLES, name="coaching_done",
               path_params=one, body=(text("note"),), response=moved)
    add_action(app, "/coaching/assignments/{assignment_id}/cancel", speaking(cancel), roles=ALL_ROLES,
               name="coaching_cancel",
               path_params=one, body=(text("reason", "why", required=True),), response=moved)
    add_action(app, "/coaching/assignments/{assignment_id}/evaluate", speaking(evaluate), roles=ALL_ROLES,
               name="coaching_evaluate", path_params=one, response=answer(evaluation="object", **DONE))
    add_action(app, "/coaching/assignments/{assignment_id}/acknowledge", speaking(acknowledge), roles=ALL_ROLES,
               name="coaching_acknowledge", path_params=one, response=moved)
    add_action(app, "/coaching/assignments/{assignment_id}/ask", speaking(ask), roles=ALL_ROLES, name="coaching_ask",
               path_params=one, body=(text("text", "the question, for the trainer and the director", required=True),),
               response=moved)
    add_action(app, "/coaching/assignments/{assignment_id}/answer", speaking(answer_question), roles=ALL_ROLES,
               name="coaching_answer", path_params=one,
               body=(uuid_id("question_id", "the question answered (its question_id)", required=True),
                     text("text", "the answer", required=True)), response=moved)
    add_action(app, "/coaching/courses", speaking(add_course), roles=("admin", "director", "trainer"),
               name="coaching_course_add", query=(SITE,), body=(
                   text("site"), text("title", required=True), names("steps", "the steps it teaches"),
                   text("description"), text("link"), whole("expected_minutes", 0, 100_000), flag("self_paced"),
                   text("reason")), response=answer(course="object", **DONE))
    add_action(app, "/coaching/mentors", speaking(set_mentor), roles=("admin", "director", "trainer"),
               name="coaching_mentor",
               query=(SITE,), body=(text("site"), text("name", "the mentor's account", required=True),
                                    names("steps", "the steps they mentor"), text("reason")),
               response=answer(mentor="object", **DONE))
    add_action(app, "/coaching/notifications/{message_id}/retry", speaking(retry_notification), roles=LEADS,
               name="coaching_retry", path_params=(uuid_id("message_id", "the notification's id", required=True),),
               response=answer(message_id="string", status="string", **DONE))



