"""Drawdowns: every flag the viewer may see, searched, filtered and sorted; one flag with its history;
acknowledge, resolve, dismiss (a reason required) and reopen (a reason required).

The lifecycle rules are the analysis's (analysis.flags.transition); every move is stored and
audited by kernel.flag_store.change_status with the user who made it and why. Directors see
and act on the flags of the teams they lead; admins on all; trainers and managers not at all.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

import coaching
from analysis.bands import Band, BandVersion, band_in_force
from analysis.confidence import Confidence, chance_by_luck, confidence, margin_past_limit
from analysis.decomposition import Decomposition, Usage, apportion, decompose
from analysis.flags import ALLOWED, FlagStatus, InvalidTransition, Thresholds, transition
from dashboards import case_mix_figures, charts, decomposition_figures, figures, overview_figures
from dashboards.access import scope_of
from dashboards.auth import Viewer
from dashboards.case_mix import case_mix_view
from dashboards.i18n import Translator, catalog
from dashboards.pages.overview import (
    FLAG_WORDS,
    ROLES,
    Labels,
    Lookups,
    grade,
    lookups,
    named,
    segment,
    team_filter,
    teams_in_view,
)
from dashboards.web import (
    DONE,
    SITE,
    ActionHandler,
    Page,
    add_action,
    add_page,
    answer,
    choice,
    chosen_site,
    route_paths,
    run,
    text,
    uuid_id,
    whole,
)
from kernel import app_keys, band_versions, flag_store, notes, processes
from kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from kernel.settings import Settings
from kernel.users import User

KINDS = ("slow", "fast", "systemic")
ANALYSIS_ACTOR = "analysis"  # who the analysis' own status changes are recorded as (stepwatch/analysis_run.py)
STATUSES = tuple(s.value for s in FlagStatus)
ACTIVE = ("open", "acknowledged", "coaching")
SORTS = ("impact", "age")
MAX_REASON = 2000
EVIDENCE_WEEKS = 12  # weeks of the evidence chart: enough to see a drawdown begin
MAX_EVIDENCE_WEEKS = 14  # reaching back to an onset dated up to 90 days before
PER_PAGE = 100  # flags per page of the list; CSV exports every flag that matches
# The moves a person makes from this page (coaching is started from a coaching assignment).
MOVES = {"ack": FlagStatus.ACKNOWLEDGED, "resolve": FlagStatus.RESOLVED, "dismiss": FlagStatus.DISMISSED,
         "reopen": FlagStatus.OPEN}
STATUS_WORDS = FLAG_WORDS["status"]
COLUMNS = ["flag_id", "kind", "status", "team", "manager", "manager_name", "managers", "step", "n", "median_ms",
           "min_ms", "reference_ms", "max_ms", "minutes_lost_per_week", "severity", "opened_at", "age_days",
           "start_date"]


def flag_row(f: flag_store.StoredFlag, now: datetime, names: dict[str, str]) -> dict[str, Any]:
    return {"flag_id": f.flag_id, "kind": f.kind, "status": f.status, "team": f.team, "manager": f.manager,
            **named(f.manager, f.managers, names), "managers": list(f.managers),
            "step": f.step, "n": f.n, "median_ms": f.median_ms, "min_ms": f.min_ms,
            "reference_ms": f.reference_ms, "max_ms": f.max_ms,
            "minutes_lost_per_week": round(f.minutes_lost_per_week, 1), "severity": f.severity,
            "opened_at": f.opened_at, "age_days": _days_since(f.opened_at, now), "start_date": f.start_date,
            "start_at_least": f.start_at_least,
            "updated_at": f.updated_at, "resolved_at": f.resolved_at, "grade": grade(f.median_ms, f.min_ms, f.max_ms)}


def began_words(_: Translator, start: date | None, at_least: bool, opened: datetime) -> str:
    """When a drawdown began, in the overview's words (its `since` macro in _heat.html): since about a
    date, at least since a date (the data begins inside), or, not dated, the day it was flagged."""
    if start is None:
        return _("overview.flagged_on", date=_.date(opened))
    return _("overview.since_at_least" if at_least else "overview.since_about", date=_.date(start))


def age_words(_: Translator, days: int) -> str:
    """How long ago a drawdown was flagged: "today", "3 d ago"."""
    return _("drawdowns.flagged_today") if days <= 0 else _("drawdowns.days_ago", n=_.num(days))


def _days_since(moment: datetime, now: datetime) -> int:
    """Whole days from `moment` to `now`; ClickHouse hands back UTC times without a zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, (now - moment).days)


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


async def drawdowns_page(request: web.Request, who: Viewer) -> Page:
    q = request.query
    site, site_names = await chosen_site(request)
    filters = {
        "manager": q.get("manager", "").strip(),
        "step": q.get("step", ""),
        "kind": _choice(q.get("kind", ""), KINDS, "kind"),
        "status": _choice(q.get("status") or "active", (*STATUSES, "active", "all"), "status"),
        "team": q.get("team", ""),
        "sort": _choice(q.get("sort") or "impact", SORTS, "sort"),
    }
    found = await run(request, lookups, who.user, site, with_run=False, with_bands=False)
    team_filter(found.scope, filters["team"], found.team_names)
    wanted_status = ACTIVE if filters["status"] == "active" else STATUSES if filters["status"] == "all" \
        else (filters["status"],)
    everything = q.get("format") == "csv"  # an export has every flag that matches, a page PER_PAGE
    number = _page_number(q.get("page") or "1")
    found_flags = await run(request, overview_figures.find_flags, site, teams=teams_in_view(found.scope, ""),
                            statuses=wanted_status, kind=filters["kind"], step=filters["step"], team=filters["team"],
                            manager=filters["manager"], sort=filters["sort"],
                            named=_named_like(found.names, filters["manager"]),
                            limit=None if everything else PER_PAGE, offset=0 if everything else (number - 1) * PER_PAGE)
    pages = max(1, -(-found_flags.total // PER_PAGE))
    if number > pages:
        raise InvalidInput(f"page must be from 1 to {pages}", field="page")
    now = datetime.now(UTC)
    rows = [flag_row(f, now, found.names) for f in found_flags.flags]
    steps = found.steps + ([{"key": filters["step"], "title": filters["step"]}]
                           if filters["step"] and filters["step"] not in {s["key"] for s in found.steps} else [])
    data = {"site": site, "sites": site_names, "filters": filters, "teams": found.team_names, "steps": steps,
            "kinds": list(KINDS), "statuses": list(STATUSES), "total": found_flags.total, "page": number,
            "pages": pages, "per_page": PER_PAGE, "flags": rows}
    words = Translator(who.user.language)
    labels = Labels(words)
    shown = [(r, {"median": labels.minutes(r["median_ms"]), "max": labels.minutes(r["max_ms"]),
                  "lost": labels.num(r["minutes_lost_per_week"]), "opened": labels.date(r["opened_at"]),
                  "began": began_words(words, r["start_date"], r["start_at_least"], r["opened_at"]),
                  "age": age_words(words, r["age_days"])}) for r in rows] if not everything else []
    return Page("drawdowns.html", data, title="drawdowns.title", table="flags", columns=COLUMNS,
                context={"seg": segment, "words": FLAG_WORDS, "shown": shown,
                         "step_titles": {s["key"]: s["title"] for s in steps}})


def _named_like(names: dict[str, str], needle: str) -> list[str]:
    """The managers whose name holds `needle` (any case): the search finds people by name as by id."""
    needle = needle.casefold()
    return sorted(m for m, name in names.items() if needle in name.casefold()) if needle else []


def _page_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidInput("page must be a whole number from 1", field="page")
    return number


def _flag_id(request: web.Request) -> str:
    raw = request.match_info["flag_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"no flag {raw}") from None


def visible_flag(client: Client, user: User, flag_id: str) -> flag_store.StoredFlag:
    """The flag, if this user may see it: admins every flag, directors those of the teams they lead."""
    flag = flag_store.get(client, flag_id)
    if not scope_of(client, user, flag.site).sees_team(flag.team):
        raise Forbidden("this flag belongs to a team your account does not lead")
    return flag


@dataclass(frozen=True)
class Detail:
    """What one drawdown's page reads: the flag, its history, the names, the latest run's rows of its
    team on its step, the weekly medians behind the evidence chart, the band's versions and the
    coaching assignment made from it."""

    flag: flag_store.StoredFlag
    history: list[dict[str, Any]]
    steps: list[dict[str, str]]
    names: dict[str, str]
    team_rows: list[dict[str, Any]]
    weeks: list[date]
    series: figures.WeeklySeries
    bands: list[BandVersion]
    assignment: coaching.CoachingAssignment | None
    course_title: str
    usage: dict[str, Usage]  # the team's and the flag's managers' visits of the step in the flag's window
    team: list[str]  # the managers of the flag's team
    #: the flag's manager's weekly medians adjusted for the client mix as the analysis adjusted them
    #: ({Monday: (sessions, median_ms)}), when its assessment was; None when it was not
    adjusted: dict[date, tuple[int, float]] | None = None


def evidence_weeks(flag: flag_store.StoredFlag) -> list[date]:
    """The Mondays the evidence shows: the last EVIDENCE_WEEKS weeks to the window's end, reaching back
    to the onset's week when it is older (an onset is dated on up to 90 days)."""
    last = flag.window_end - timedelta(days=flag.window_end.weekday())
    count = EVIDENCE_WEEKS
    if flag.start_date is not None:
        onset_monday = flag.start_date - timedelta(days=flag.start_date.weekday())
        count = min(MAX_EVIDENCE_WEEKS, max(count, (last - onset_monday).days // 7 + 2))
    return [last - timedelta(weeks=count - 1 - i) for i in range(count)]


@dataclass(frozen=True)
class Members:
    """The flag the user may see, the lookups of its site, its team's managers, and those with the flag's own."""

    flag: flag_store.StoredFlag
    found: Lookups
    team: list[str]
    members: list[str]


def flag_members(client: Client, user: User, flag_id: str) -> Members:
    flag = visible_flag(client, user, flag_id)
    found = lookups(client, user, flag.site, with_run=False, with_bands=False)
    team = sorted(m for m, t in found.scope.team_of.items() if t == flag.team) if flag.team else []
    return Members(flag, found, team,
                   sorted(set(team) | set(flag.managers) | ({flag.manager} if flag.manager else set())))


def flag_usage(client: Client, of: Members) -> dict[str, Usage]:
    """The team's and the flag's managers' visits of its step in its window, for where the extra time
    goes (none for a fast flag). Read beside `flag_detail`, in a worker of its own: on a ClickHouse
    server or cluster each takes about half of the page's time, and they do not wait for each other."""
    flag = of.flag
    if flag.kind == "fast":
        return {}
    return decomposition_figures.step_usage(client, flag.site, flag.step, of.members, flag.window_start,
                                            flag.window_end)


def flag_detail(client: Client, settings: Settings, user: User, of: Members) -> Detail:
    """Everything of the page but the team's visits (`flag_usage`): `usage` comes empty."""
    flag, found, team, members = of.flag, of.found, of.team, of.members
    latest = figures.latest_stats(client, flag.site, step=flag.step, managers=members)
    weeks = evidence_weeks(flag)
    apart = [flag.manager] if flag.manager else list(flag.managers)
    series = figures.weekly_series(client, flag.site, flag.step, weeks[0], flag.window_end, managers=members,
                                   apart=apart, metric=settings.analysis_metric)
    bands = [BandVersion(v.effective_from, v.team or None, Band(v.min_ms, v.reference_ms, v.max_ms))
             for v in band_versions.versions(client, flag.site, flag.step)]
    assignment, course_title = None, ""
    if flag.kind == "slow":
        linked = [a for a in coaching.list_assignments(client, flag.site, user, manager=flag.manager, step=flag.step)
                  if a.flag_id == flag.flag_id]  # open ones first, then by due date
        assignment = linked[0] if linked else None
        if assignment is not None and assignment.course_id:
            course_title = next((c.title for c in coaching.list_courses(client, flag.site, include_retired=True)
                                 if c.course_id == assignment.course_id), assignment.course_id)
    rows = [r for r in latest.rows if r.get("team") == flag.team or r.get("manager") in members]
    mix = next((r.get("case_mix") for r in rows if flag.manager and r["manager"] == flag.manager), None)
    adjusted = None
    if case_mix_figures.has_adjustment(mix):  # the chart shows what the flag's median rests on
        process = processes.latest(client, flag.site)
        adjusted = case_mix_figures.adjusted_weekly_medians(
            client, flag.site, flag.step, flag.manager, weeks[0], flag.window_end, mix=mix,  # type: ignore[arg-type]
            declared=process.attributes if process else {}, metric=settings.analysis_metric)
    return Detail(flag, flag_store.history(client, flag.flag_id), found.steps, found.names, rows, weeks, series, bands,
                  assignment, course_title, {}, team, adjusted)


def where_time_goes(detail: Detail) -> Decomposition | None:
    """The flag's manager (a systemic flag: its slow managers together) against the rest of the team on
    the step over the flag's window; none for a fast flag (no extra time) or without sessions on both sides."""
    flag = detail.flag
    if flag.kind == "fast":
        return None
    apart = {flag.manager} if flag.manager else set(flag.managers)
    mine = Usage.pooled(u for m, u in detail.usage.items() if m in apart)
    rest = Usage.pooled(u for m, u in detail.usage.items() if m in detail.team and m not in apart)
    return decompose(mine, rest, (flag.window_end - flag.window_start).days + 1)


def decomposition_json(d: Decomposition | None) -> dict[str, Any] | None:
    """The JSON twin's `decomposition`: minutes a week to a tenth, the parts adding up to the total exactly
    (and idle plus hidden to their part), with the rates behind them."""
    if d is None:
        return None
    total, (longer, returns, idle_hidden) = apportion(d.total_minutes, d.parts, 0.1)
    _, (idle, hidden) = apportion(idle_hidden, [d.idle_minutes, d.hidden_minutes], 0.1)

    def rates(p: Any) -> dict[str, Any]:
        return {"sessions": p.sessions, "visits_per_session": round(p.visits_per_session, 3),
                "active_ms_per_visit": round(p.active_ms_per_visit), "idle_ms_per_visit": round(p.idle_ms_per_visit),
                "hidden_ms_per_visit": round(p.hidden_ms_per_visit), "ms_per_session": round(p.ms_per_session)}

    return {"total_minutes": total, "longer_visits_minutes": longer, "more_visits_minutes": returns,
            "idle_hidden_minutes": idle_hidden, "idle_minutes": idle, "hidden_minutes": hidden,
            "sessions_per_week": round(d.sessions_per_week, 1), "manager": rates(d.mine), "team": rates(d.team)}


# The parts in the order the page says them: their key, and the message said when they add and when they save.
PARTS = (("longer", "drawdowns.part_longer", "drawdowns.part_shorter"),
         ("returns", "drawdowns.part_returns", "drawdowns.part_fewer_returns"),
         ("idle", "drawdowns.part_idle", "drawdowns.part_less_idle"))
BAR_WIDTH = 600  # the stacked bar's drawing width (it is scaled to the column)


def _visits(_: Translator, per_session: float, digits: int) -> str:
    """'1.6 visits' / '1,6 визита': a rate said to `digits` decimals, its plural form that of the words said
    ("1.0 visits": a Decimal keeps the shown decimals, which CLDR's rules read and a float loses)."""
    shown = Decimal(f"{per_session:.{digits}f}")
    return _.plural("drawdowns.visits", shown, n=_.num(float(shown), digits))  # type: ignore[arg-type]


def _visit_digits(mine: float, team: float) -> int:
    """Visits a session to a tenth, or to a hundredth when a tenth would show two different rates as one
    ("3 minutes from coming back: 1.0 visits a session against 1.0" reads as a contradiction)."""
    return 2 if round(mine, 1) == round(team, 1) and round(mine, 2) != round(team, 2) else 1


def decomposition_words(_: Translator, d: Decomposition | None, who: str, step: str, systemic: bool,
                        lost: float = 0.0) -> dict[str, Any] | None:
    """Where the extra time goes, for a reader: one sentence in whole minutes that add up, the stacked bar's
    segments (when every part adds time) and the table behind them.

    The split's total (mean sessions against the rest of the team) is not the flag's time lost (`lost`,
    the median against the reference, said under the chart): when the two read differently the sentence
    says which comparison each one is, so "45 min" above and "49 minutes" here are not a contradiction."""
    if d is None:
        return None
    total, parts = apportion(d.total_minutes, d.parts)
    mine, team = d.mine, d.team
    digits = _visit_digits(mine.visits_per_session, team.visits_per_session)
    figures = {"longer": (_.minutes(mine.active_ms_per_visit), _.minutes(team.active_ms_per_visit)),
               "returns": (_.num(mine.visits_per_session, digits), _.num(team.visits_per_session, digits)),
               "idle": (_.minutes(mine.idle_ms_per_visit + mine.hidden_ms_per_visit),
                        _.minutes(team.idle_ms_per_visit + team.hidden_ms_per_visit))}
    rates = {**figures, "returns": (_visits(_, mine.visits_per_session, digits), figures["returns"][1])}
    if total <= 0:
        sentence = _("drawdowns.no_extra_team" if systemic else "drawdowns.no_extra", who=who, step=step,
                     mine=_.minutes(mine.ms_per_session), team=_.minutes(team.ms_per_session))
    else:
        said = [_(add if n > 0 else save, n=_.num(abs(n)), mine=rates[key][0], team=rates[key][1])
                for (key, add, save), n in zip(PARTS, parts, strict=True) if n != 0]
        lead = _.plural("drawdowns.extra_lead_team" if systemic else "drawdowns.extra_lead", int(total), who=who,
                        step=step, n=_.num(total))
        sentence = _("drawdowns.extra_sentence", lead=lead, parts=_("drawdowns.list_separator").join(said))
    if lost > 0 and _.num(max(0.0, total)) != _.num(lost):
        sentence += " " + _("drawdowns.extra_not_lost", lost=_("unit.min", n=_.num(lost)))
    segments = []
    if total > 0 and all(n >= 0 for n in parts):
        x = 0.0
        for (key, *_keys), n in zip(PARTS, parts, strict=True):
            if n > 0:
                width = BAR_WIDTH * n / total
                segments.append({"key": key, "x": round(x, 1), "width": round(width, 1)})
                x += width
    rows = [{"key": key, "label": _(f"drawdowns.cause_{key}"), "minutes": _.num(n), "mine": figures[key][0],
             "team": figures[key][1]} for (key, *_keys), n in zip(PARTS, parts, strict=True)]
    return {"sentence": sentence, "segments": segments, "rows": rows, "total": _.num(total),
            "per_session": (_.minutes(mine.ms_per_session), _.minutes(team.ms_per_session)),
            "sessions_per_week": _.num(d.sessions_per_week, 1)}


def peers_of(row: dict[str, Any] | None, team_rows: list[dict[str, Any]], min_sessions: int) -> dict[str, int] | None:
    """{"slower_than": k, "of": n}: the teammates on the step with enough sessions, and how many of them
    have a lower median. The analysis' stored `peers` when the run has it, else worked out the same way
    from the run's rows of the team."""
    if row is None:
        return None
    if "peers" in row:
        return row["peers"]
    mine = row.get("median_ms")
    others = [r["median_ms"] for r in team_rows if r["manager"] != row["manager"] and r.get("median_ms") is not None
              and (r.get("n") or 0) >= min_sessions]
    if mine is None or not others:
        return None
    return {"slower_than": sum(1 for m in others if m < mine), "of": len(others)}


def evidence(detail: Detail, names: dict[str, str]) -> dict[str, Any]:
    """The JSON twin's `evidence`: per week the flag's manager (or, systemic, the whole team) against
    the rest of the team and the band in force that week; a systemic flag lists its slow managers.

    When the manager's assessment was adjusted for the client mix (`adjusted_for_case_mix`), their
    weekly medians are the adjusted ones, the figures the flag's median comes from, and each week keeps
    the median as measured too (`manager_measured_median_ms`); the rest of the team is as measured,
    the mix the manager's times were scaled to."""
    flag = detail.flag
    weeks = []
    for monday in detail.weeks:
        band = band_in_force(detail.bands, min(monday + timedelta(days=6), flag.window_end), flag.team or None)
        extra: dict[str, Any] = {}
        if flag.manager:
            n, mine = detail.series.get(monday, flag.manager)
            _, team = detail.series.get(monday, "")
            if detail.adjusted is not None:
                extra["manager_measured_median_ms"] = _round(mine)
                n, mine = detail.adjusted.get(monday, (0, None))
        else:
            n, mine = 0, None
            n, team = detail.series.get(monday, None)
        weeks.append({"week": monday, "manager_median_ms": _round(mine), "team_median_ms": _round(team),
                      "band": None if band is None else {"min_ms": band.band.min_ms,
                                                         "reference_ms": band.band.reference_ms,
                                                         "max_ms": band.band.max_ms}, "n": n, **extra})
    slow = [{"manager": m, "manager_name": names.get(m),
             "weeks": [_round(detail.series.get(w, m)[1]) for w in detail.weeks]} for m in flag.managers] \
        if not flag.manager else []
    return {"weeks": weeks, "slow_managers": slow, "adjusted_for_case_mix": detail.adjusted is not None}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def drawdown_page(request: web.Request, who: Viewer) -> Page:
    settings: Settings = request.app[app_keys.SETTINGS]
    of = await run(request, flag_members, who.user, _flag_id(request))
    detail, usage = await asyncio.gather(run(request, flag_detail, settings, who.user, of),
                                         run(request, flag_usage, of))
    detail = replace(detail, usage=usage)
    flag, names = detail.flag, detail.names
    _ = Translator(who.user.language)
    row = flag_row(flag, datetime.now(UTC), names)
    mine = next((r for r in detail.team_rows if flag.manager and r["manager"] == flag.manager), None)
    step_title = next((s["title"] for s in detail.steps if s["key"] == flag.step), flag.step)
    row.update({"site": flag.site, "window_start": flag.window_start, "window_end": flag.window_end,
                "q_value": flag.q_value, "periods_in_drawdown": flag.periods_in_drawdown,
                "start_at_least": flag.start_at_least, "reasons": list(flag.reasons),
                "reason_codes": flag_reason_codes(flag),
                "step_title": step_title, "minutes_lost_per_week": round(lost_minutes(flag, detail.team_rows), 1),
                "p25_ms": (mine or {}).get("p25_ms"), "p75_ms": (mine or {}).get("p75_ms"),
                "p90_ms": (mine or {}).get("p90_ms")})
    allowed = {s.value for s in ALLOWED[FlagStatus(flag.status)]}
    actions = [{"name": name, "to": target.value, "reason_required": target in (FlagStatus.DISMISSED,
                                                                                FlagStatus.OPEN)}
               for name, target in MOVES.items() if target.value in allowed]
    can_coach = flag.kind == "slow" and FlagStatus.COACHING.value in allowed
    links = {"manager": f"/managers/{segment(flag.manager)}" if flag.manager else None,
             "step": f"/steps/{segment(flag.step)}",
             "coaching": _coaching_link(request, flag) if can_coach else None}
    peers = peers_of(mine, detail.team_rows, settings.analysis_min_sessions)
    window_weeks = Thresholds().persistence_window
    sure = confidence(kind=flag.kind, n=flag.n, median_ms=flag.median_ms, min_ms=flag.min_ms,  # type: ignore[arg-type]
                      max_ms=flag.max_ms, q_value=flag.q_value, weeks_in_drawdown=flag.periods_in_drawdown,
                      window_weeks=window_weeks, min_sessions=settings.analysis_min_sessions)
    onset = {"date": flag.start_date, "at_least": flag.start_at_least} if flag.start_date else None
    a = detail.assignment
    assignment = None if a is None else {
        "assignment_id": a.assignment_id, "kind": a.kind, "course_title": detail.course_title or None,
        "mentor": a.mentor or None, "state": a.state, "is_open": a.is_open, "due": a.due,
        "assigned_on": a.assigned_on, "link": f"/coaching/assignments/{a.assignment_id}"}
    slow_count, team_count = systemic_counts(flag, detail.team_rows, settings.analysis_min_sessions)
    data = {"flag": row, "history": detail.history, "actions": actions, "links": links,
            "evidence": evidence(detail, names), "onset": onset,
            "confidence": {"level": sure.level, "why": why(_, sure)},
            "explanation": explanation(_, flag, row, peers, window_weeks, slow_count, team_count),
            "peers": peers, "assignment": assignment}
    split = where_time_goes(detail)
    data["decomposition"] = decomposition_json(split)
    data["case_mix"] = (mine or {}).get("case_mix")  # how the mix of clients was accounted for (analysis/strata.py)
    process = await run(request, processes.latest, flag.site) if data["case_mix"] else None
    data["notes"] = await run(request, flag_notes, who.user, flag, detail.weeks, names)
    picked = next((n for n in data["notes"] if n["note_id"] == request.query.get("note")), None)
    chart_args = evidence_chart_args(_, detail, data, names)
    context = {"seg": segment, "words": FLAG_WORDS, "step_title": step_title,
               "chart_wide": charts.evidence(_, **chart_args),
               "chart_narrow": charts.evidence(_, **chart_args, width=380, height=240),
               "series_names": (chart_args["main"].name,
                                chart_args["compare"].name if chart_args["compare"] else None),
               "luck": luck(_, flag.q_value), "history_shown": history_shown(_, detail.history),
               "note_reason": note_reason(_, picked) if picked else "",
               "decomposition": decomposition_words(_, split, row.get("manager_name") or flag.manager or "",
                                                    step_title, flag.kind == "systemic",
                                                    row["minutes_lost_per_week"]),
               "case_mix": case_mix_view(_, data["case_mix"], process, row.get("manager_name") or flag.manager or "")}
    return Page("drawdown.html", data, title="drawdowns.detail_title", table="history",
                columns=["at", "actor", "from_status", "to_status", "reason"], context=context)


def flag_notes(client: Client, user: User, flag: flag_store.StoredFlag, weeks: list[date],
               names: dict[str, str]) -> list[dict[str, Any]]:
    """The notes of the flag's managers (those the account sees) on this flag, and on the flag's step in
    the weeks the evidence shows: what the manager says happened, next to the figures."""
    scope = scope_of(client, user, flag.site)
    managers = [m for m in ([flag.manager] if flag.manager else flag.managers) if scope.sees_manager(m)]
    first, last = weeks[0], weeks[-1]
    return [{**n.as_dict(), "manager_name": names.get(n.manager)}
            for n in notes.notes_of(client, flag.site, managers, step=flag.step)
            if n.flag_id == flag.flag_id or (n.week is not None and first <= n.week <= last)]


def note_reason(_: Translator, note: dict[str, Any]) -> str:
    """A note as the reason a flag is dismissed: whose, which week, the words."""
    who = note["manager_name"] or note["manager"]
    where = _("drawdowns.note_week", date=_.date(note["week"])) if note["week"] else _("drawdowns.note_on_flag")
    return _("drawdowns.note_reason", manager=who, where=where, text=note["text"])[:MAX_REASON]


_COACHING_REASON = re.compile(r"^coaching assignment ([0-9a-fA-F-]{36})( evaluated improved)?")


def history_shown(_: Translator, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each change's "why" as a person reads it: the analysis' own notes (English, with figures and
    ISO dates) become a sentence in the viewer's language, a coaching assignment's id a link to it;
    what a person wrote stays as written. The JSON twin and the CSV keep the stored text."""
    shown = []
    for h in history:
        found = _COACHING_REASON.match(h.get("reason") or "")
        link = f"/coaching/assignments/{found.group(1)}" if found else None
        if found:
            why = _("drawdowns.history_coaching_worked" if found.group(2) else "drawdowns.history_coaching")
        elif h.get("actor") == ANALYSIS_ACTOR:
            key = f"drawdowns.history_analysis_{h['to_status']}"
            why = _(key) if key in catalog() else _("drawdowns.history_analysis")
        else:
            why = h.get("reason") or "–"
        shown.append({**h, "why": why, "link": link})
    return shown


def flag_reason_codes(flag: flag_store.StoredFlag) -> list[dict[str, Any]]:
    """Why the flag stands, as codes with their figures (machine values, for the JSON twins), read from the
    flag's stored figures: the stored `reasons` are the analysis' English, kept for the CLI and the CSV, and
    the figures say the same for any flag, those raised before the codes existed included."""
    codes: list[dict[str, Any]] = []
    if flag.kind == "systemic":
        codes.append({"code": "systemic", "managers": len(flag.managers)})
    elif flag.kind == "fast":
        codes.append({"code": "below_min", "median_ms": flag.median_ms, "min_ms": flag.min_ms})
    elif flag.median_ms > flag.max_ms:
        codes.append({"code": "above_max", "median_ms": flag.median_ms, "max_ms": flag.max_ms})
    else:
        codes.append({"code": "slower_than_peers", "median_ms": flag.median_ms, "reference_ms": flag.reference_ms})
    if flag.periods_in_drawdown:
        codes.append({"code": "weeks", "weeks": flag.periods_in_drawdown})
    codes.append({"code": "since", "start_date": flag.start_date.isoformat() if flag.start_date else None,
                  "at_least": flag.start_at_least})
    return codes


def flag_reasons(_: Translator, flag: flag_store.StoredFlag) -> list[str]:
    """The flag's reason codes in the viewer's language, at display time: a flag raised while the analysis
    wrote English reads in Russian to a Russian reader."""
    said = []
    for c in flag_reason_codes(flag):
        if c["code"] == "systemic":
            said.append(_("drawdowns.reason_systemic", k=_.num(c["managers"])))
        elif c["code"] == "below_min":
            said.append(_("drawdowns.reason_below_min", median=_.minutes(c["median_ms"]), min=_.minutes(c["min_ms"])))
        elif c["code"] == "above_max":
            said.append(_("drawdowns.reason_above_max", median=_.minutes(c["median_ms"]), max=_.minutes(c["max_ms"])))
        elif c["code"] == "slower_than_peers":
            above = max(0.0, c["median_ms"] / c["reference_ms"] - 1) if c["reference_ms"] else 0.0
            said.append(_("drawdowns.reason_slower_than_peers", median=_.minutes(c["median_ms"]), above=_.pct(above)))
        elif c["code"] == "weeks":
            said.append(_("drawdowns.reason_weeks", weeks=_.num(c["weeks"])))
        else:
            said.append(since_words(_, flag))
    return said


def lost_minutes(flag: flag_store.StoredFlag, team_rows: list[dict[str, Any]]) -> float:
    """Time lost a week: none for a fast flag (possible skipped work); a systemic flag's is the sum over
    its slow managers as the latest run counts them (the flag's own figure when the run has none)."""
    if flag.kind == "fast":
        return 0.0
    if flag.kind == "systemic":
        found = [r.get("minutes_lost_per_week") for r in team_rows
                 if r["manager"] in flag.managers and r.get("status") == "slow"]
        if found and all(v is not None for v in found):
            return float(sum(found))  # type: ignore[arg-type]
    return flag.minutes_lost_per_week


def systemic_counts(flag: flag_store.StoredFlag, team_rows: list[dict[str, Any]], min_sessions: int) -> tuple[int, int]:
    """(slow managers, managers of the team with enough sessions on the step) for a systemic flag."""
    enough = {r["manager"] for r in team_rows if r.get("team") == flag.team and (r.get("n") or 0) >= min_sessions
              and r.get("status") not in ("insufficient", "no_band")}
    return len(flag.managers), max(len(enough | set(flag.managers)), len(flag.managers))


def since_words(_: Translator, flag: flag_store.StoredFlag, lead: bool = False) -> str:
    """Since when, as a reason (or, `lead`, opening the sentence under the chart); a flag whose start
    is not dated says the day it was flagged, as the overview and the list do."""
    if flag.start_date is None:
        return _("drawdowns.since_unknown_lead" if lead else "drawdowns.since_unknown", date=_.date(flag.opened_at))
    return _("drawdowns.since_at_least" if flag.start_at_least else "drawdowns.since_about",
             date=_.date(flag.start_date))


def persistence_words(_: Translator, weeks: int, of: int) -> str:
    """How many of the last `of` weeks the drawdown held: "in each of the last 4 weeks" when it held every
    week ("in 4 of the last 4 weeks" reads as if something were missing), else "in 3 of the last 4 weeks"."""
    if of > 0 and weeks >= of:
        return _.plural("drawdowns.persist_every", of, of=_.num(of))
    return _.plural("drawdowns.persist_some", of, weeks=_.num(weeks), of=_.num(of))


def explanation(_: Translator, flag: flag_store.StoredFlag, row: dict[str, Any], peers: dict[str, int] | None,
                window_weeks: int, slow_count: int, team_count: int) -> str:
    """The sentence under the chart, in the viewer's language: since when, who, how far, how often, how much."""
    since = since_words(_, flag, lead=True)
    lost = _("unit.min", n=_.num(row["minutes_lost_per_week"]))
    common = {"since": since, "manager": row.get("manager_name") or flag.manager, "step": row["step_title"],
              "median": _.minutes(flag.median_ms), "lost": lost,
              "persist": persistence_words(_, flag.periods_in_drawdown, window_weeks)}
    if flag.kind == "systemic":
        return _.plural("drawdowns.explain_systemic", team_count, **common, k=_.num(slow_count),
                        n=_.num(team_count), team=flag.team or "–", max=_.minutes(flag.max_ms))
    if flag.kind == "fast":
        return _("drawdowns.explain_fast", **common,
                 below=_.pct(margin_past_limit("fast", flag.median_ms, flag.min_ms, flag.max_ms)))
    peer_words = _.plural("drawdowns.explain_peers", peers["of"], k=_.num(peers["slower_than"]), n=_.num(peers["of"])) \
        if peers and peers.get("of") else ""
    if flag.median_ms <= flag.max_ms:  # inside the band: the peer rule flagged it
        inside = _.plural("verdict.slower_than_peers", peers["of"], k=_.num(peers["slower_than"]),
                          n=_.num(peers["of"])) if peers and peers.get("of") else _("drawdowns.inside_band")
        return _("drawdowns.explain_inside", **common, inside=inside,
                 above=_.pct(max(0.0, flag.median_ms / flag.reference_ms - 1)) if flag.reference_ms else "–")
    return _("drawdowns.explain_slow", **common, peers=peer_words,
             above=_.pct(margin_past_limit("slow", flag.median_ms, flag.min_ms, flag.max_ms)))


# The reasons said with a count, and the figure that picks their plural form ("1 session", "5 сессий").
WHY_PLURAL = {"drawdowns.why_few_sessions": "n", "drawdowns.why_clear": "of", "drawdowns.why_not_every_week": "of",
              "drawdowns.why_team_every_week": "of"}


def why(_: Translator, sure: Confidence) -> str:
    f = sure.figures
    values = {"n": _.num(f["n"]), "pct": _.pct(f["margin"]), "weeks": _.num(f["weeks"]), "of": _.num(f["of"]),
              "luck": luck(_, f["q_value"]),  # type: ignore[arg-type]
              "sessions": _.plural("drawdowns.session_count", f["n"], n=_.num(f["n"]))}  # type: ignore[arg-type]
    key = f"drawdowns.why_{sure.why}"
    if key in WHY_PLURAL:
        return _.plural(key, f[WHY_PLURAL[key]], **values)  # type: ignore[arg-type]
    return _(key, **values)


def luck(_: Translator, q_value: float | None) -> str:
    """A q-value as the chance of such a difference by luck, in words."""
    odds = chance_by_luck(q_value)
    if odds is None:
        return _("drawdowns.luck_untested")
    return _(f"drawdowns.luck_{odds[0]}", n=_.num(odds[1]))


def evidence_chart_args(_: Translator, detail: Detail, data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The evidence chart's lines, bands and marks; weeks before the first session are left out of the
    drawing (the JSON twin keeps them), so the history the site has fills the width."""
    flag, weeks = detail.flag, data["evidence"]["weeks"]
    slow = data["evidence"]["slow_managers"]
    has_data = [w["manager_median_ms"] is not None or w["team_median_ms"] is not None
                or any(s["weeks"][i] is not None for s in slow) for i, w in enumerate(weeks)]
    first = min(next((i for i, seen in enumerate(has_data) if seen), 0), max(0, len(weeks) - 4))
    weeks = weeks[first:]
    bands = [None if w["band"] is None else charts.Limits(w["band"]["min_ms"], w["band"]["reference_ms"],
                                                          w["band"]["max_ms"]) for w in weeks]
    events: list[tuple[date, str]] = []
    a = data["assignment"]
    if a is not None:
        events = [(a["assigned_on"], _("drawdowns.chart_coaching", date=_.date(a["assigned_on"]))),
                  (a["due"], _("drawdowns.chart_due", date=_.date(a["due"])))]
    compare: charts.Series | None = None
    others: list[charts.Series] = []
    if flag.manager:
        main = charts.Series(names.get(flag.manager) or flag.manager, [w["manager_median_ms"] for w in weeks])
        compare = charts.Series(_("drawdowns.chart_team_rest"), [w["team_median_ms"] for w in weeks])
        sessions = [w["n"] for w in weeks]
    else:
        main = charts.Series(_("drawdowns.chart_team", team=flag.team or "–"), [w["team_median_ms"] for w in weeks])
        sessions = [w["n"] for w in weeks]
        others = [charts.Series(s["manager_name"] or s["manager"], s["weeks"][first:]) for s in slow]
    label = _("drawdowns.chart_label", step=data["flag"]["step_title"], who=main.name)
    note = _("drawdowns.chart_adjusted") if data["evidence"].get("adjusted_for_case_mix") else ""
    return {"label": label, "weeks": [w["week"] for w in weeks], "main": main, "compare": compare, "others": others,
            "sessions": sessions, "bands": bands, "onset": flag.start_date, "at_least": flag.start_at_least,
            "events": events, "note": note}


def _coaching_link(request: web.Request, flag: flag_store.StoredFlag) -> str | None:
    """Where to assign coaching for this flag, once the coaching pages exist (they add /coaching/new)."""
    paths = route_paths(request)
    return f"/coaching/new?flag={flag.flag_id}" if "/coaching/new" in paths else None


def move_flag(client: Client, user: User, flag_id: str, target: FlagStatus, reason: str,
              _: Translator) -> tuple[str, flag_store.StoredFlag]:
    flag = visible_flag(client, user, flag_id)
    try:
        transition(flag.status, target, reason)
    except InvalidTransition:
        if target in (FlagStatus.DISMISSED, FlagStatus.OPEN) and not reason.strip() \
                and target in ALLOWED[FlagStatus(flag.status)]:
            raise InvalidInput(_("drawdowns.reason_required"), field="reason") from None
        allowed = ", ".join(_(STATUS_WORDS[s.value]) for s in sorted(ALLOWED[FlagStatus(flag.status)]))
        raise Conflict(_("drawdowns.not_allowed", current=_(STATUS_WORDS[flag.status]),
                         target=_(STATUS_WORDS[target.value]), allowed=allowed)) from None
    return flag.status, flag_store.change_status(client, flag, target.value, actor=user.name, reason=reason.strip())


def _mover(name: str, target: FlagStatus) -> ActionHandler:
    async def handler(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
        _ = Translator(who.user.language)
        reason = str(fields.get("reason") or "")
        if len(reason) > MAX_REASON:
            raise InvalidInput(_("drawdowns.reason_too_long", n=MAX_REASON), field="reason")
        flag_id = _flag_id(request)
        before, changed = await run(request, move_flag, who.user, flag_id, target, reason, _)
        return {"flag_id": flag_id, "from_status": before, "status": changed.status,
                "message": _("drawdowns.moved", status=_(STATUS_WORDS[changed.status])),
                "redirect": f"/drawdowns/{flag_id}"}

    handler.__name__ = f"drawdown_{name}"
    return handler


def register(app: web.Application) -> None:
    flag_id = uuid_id("flag_id", "the flag's id", required=True)
    add_page(app, "/drawdowns", drawdowns_page, roles=ROLES, name="drawdowns", query=(
        SITE, text("manager", "one manager's flags"), text("step", "one step's flags"),
        choice("kind", KINDS), choice("status", (*STATUSES, "active", "all"), "default: active"),
        text("team", "one team's flags"), choice("sort", SORTS, "default: impact"),
        whole("page", 1, 1_000_000, "which page of 100 flags (default 1)")),
             response=answer(site="string", sites="array", filters="object", teams="array", steps="array",
                             kinds="array", statuses="array", total="integer", page="integer", pages="integer",
                             per_page="integer", flags="array"))
    add_page(app, "/drawdowns/{flag_id}", drawdown_page, roles=ROLES, name="drawdown", path_params=(flag_id,),
             query=(uuid_id("note", "a manager's note to offer as the reason to dismiss"),),
             response=answer(flag="object", history="array", actions="array", links="object", evidence="object",
                             onset="object?", confidence="object", explanation="string", peers="object?",
                             assignment="object?", notes="array", decomposition="object?"))
    moved = answer(flag_id="string", from_status="string", status="string", **DONE)
    for name, target in MOVES.items():
        add_action(app, f"/drawdowns/{{flag_id}}/{name}", _mover(name, target), roles=ROLES, name=f"drawdown_{name}",
                   path_params=(flag_id,), body=(text("reason", "why (required to dismiss or reopen)",
                                                      required=name in ("dismiss", "reopen")),), response=moved)
