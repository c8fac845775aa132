"""Drawdowns: every flag the viewer may see, searched, filtered and sorted; one flag with its history;
acknowledge, resolve, dismiss (a reason required) and reopen (a reason required).

The lifecycle rules are the analysis's (analysis.flags.transition); every move is stored and
audited by kernel.flag_store.change_status with the user who made it and why. Directors see
and act on the flags of the teams they lead; admins on all; trainers and managers not at all.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from analysis.flags import ALLOWED, FlagStatus, InvalidTransition, transition
from dashboards import overview_figures
from dashboards.access import scope_of
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.pages.overview import (
    FLAG_WORDS,
    ROLES,
    Labels,
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
from kernel import flag_store
from kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from kernel.users import User

KINDS = ("slow", "fast", "systemic")
STATUSES = tuple(s.value for s in FlagStatus)
ACTIVE = ("open", "acknowledged", "coaching")
SORTS = ("impact", "age")
MAX_REASON = 2000
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
            "updated_at": f.updated_at, "resolved_at": f.resolved_at, "grade": grade(f.median_ms, f.min_ms, f.max_ms)}


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
    labels = Labels(Translator(who.user.language))
    shown = [(r, {"median": labels.minutes(r["median_ms"]), "max": labels.minutes(r["max_ms"]),
                  "lost": labels.num(r["minutes_lost_per_week"]), "opened": labels.date(r["opened_at"]),
                  "age": labels.num(r["age_days"])}) for r in rows] if not everything else []
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


def flag_detail(client: Client, user: User, flag_id: str) -> tuple[flag_store.StoredFlag, list[dict[str, Any]],
                                                                       list[dict[str, str]], dict[str, str]]:
    flag = visible_flag(client, user, flag_id)
    found = lookups(client, user, flag.site, with_run=False, with_bands=False)
    return flag, flag_store.history(client, flag_id), found.steps, found.names


async def drawdown_page(request: web.Request, who: Viewer) -> Page:
    flag, history, steps, names = await run(request, flag_detail, who.user, _flag_id(request))
    row = flag_row(flag, datetime.now(UTC), names)
    row.update({"site": flag.site, "window_start": flag.window_start, "window_end": flag.window_end,
                "q_value": flag.q_value, "periods_in_drawdown": flag.periods_in_drawdown,
                "reasons": list(flag.reasons)})
    allowed = {s.value for s in ALLOWED[FlagStatus(flag.status)]}
    actions = [{"name": name, "to": target.value, "reason_required": target in (FlagStatus.DISMISSED,
                                                                                FlagStatus.OPEN)}
               for name, target in MOVES.items() if target.value in allowed]
    links = {"manager": f"/managers/{segment(flag.manager)}" if flag.manager else None,
             "step": f"/steps/{segment(flag.step)}",
             "coaching": _coaching_link(request, flag) if flag.kind in ("slow", "fast") else None}
    data = {"flag": row, "history": history, "actions": actions, "links": links}
    return Page("drawdown.html", data, title="drawdowns.detail_title", table="history",
                columns=["at", "actor", "from_status", "to_status", "reason"],
                context={"seg": segment, "words": FLAG_WORDS,
                         "step_title": next((s["title"] for s in steps if s["key"] == flag.step), flag.step)})


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
             response=answer(flag="object", history="array", actions="array", links="object"))
    moved = answer(flag_id="string", from_status="string", status="string", **DONE)
    for name, target in MOVES.items():
        add_action(app, f"/drawdowns/{{flag_id}}/{name}", _mover(name, target), roles=ROLES, name=f"drawdown_{name}",
                   path_params=(flag_id,), body=(text("reason", "why (required to dismiss or reopen)",
                                                      required=name in ("dismiss", "reopen")),), response=moved)
