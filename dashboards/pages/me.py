"""My figures: a manager account's own step times, what needs their attention first, what stepwatch
measures about them and who sees it, and their notes on their figures.

    GET /me?site=&since=&until=      (JSON twin: /api/v1/me)

Always the manager id linked to the account: there is no parameter naming a manager, so nobody
else's data can be asked for. Other roles get 403 (they open /managers/{manager} instead).

The page opens with what needs attention (the manager's own active drawdowns, with since when and
the time lost, and pairs on watch) or an all-clear in words. Each step's median is set against the
band and against the manager's own previous weeks, never against a named colleague; a figure about
other people (the teammates' typical median) is shown only when it covers at least
`settings.peer_group_min` of them. "What stepwatch measures and why" is written from the site's
real settings and process, and names the accounts that can see these figures by the same rule the
pages use to let them (access.scope_of).
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import date, timedelta
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboards import access, figures
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.pages import coaching as coaching_pages
from dashboards.pages.manager import (
    ACTIVE_FLAG,
    FIGURES,
    PERIOD,
    TABLE,
    TREND_WEEKS,
    Period,
    csv_table,
    manager_data,
    period_of,
    segment,
    step_charts,
)
from dashboards.web import SITE, Page, add_page, answer, chosen_site, run
from kernel import app_keys, processes, teams, users
from kernel.errors import Forbidden
from kernel.settings import Settings
from kernel.users import User

PREVIOUS_WEEKS = 4  # "my median now" is set against the four weeks before the window
SAME = 0.05  # a change of less than 5 % either way reads as "about the same"
NEVER_COLLECTED = ("page_text", "keystrokes", "form_fields", "titles")
ATTENTION_KINDS = ("slow", "fast", "systemic")


def my_figures(data: dict[str, Any], before: dict[str, tuple[int, float | None]],
               teammates: dict[str, dict[str, Any]], facts: dict[str, Any], period: Period) -> dict[str, Any]:
    """manager_data for the account's own manager id, with the attention list, each step against the
    manager's previous weeks (`previous_medians`) and the teammates (`teammates_medians`, where enough
    of them), and the transparency facts (`transparency`). Pure: the page reads the parts at once."""
    # beside `steps` (the manager page's figures, unchanged): each step against the manager's own past
    data["comparison"] = {s["step"]: {"previous": compared(s["median_ms"], before.get(s["step"]), period),
                                      "teammates": teammates.get(s["step"])} for s in data["steps"]}
    data["attention"] = attention(data)
    data["transparency"] = facts
    data["note_weeks"] = note_weeks(period)
    return data


def previous_medians(client: Client, settings: Settings, site: str, manager: str,
                     period: Period) -> dict[str, tuple[int, float | None]]:
    """Step -> (sessions, median) of the manager's PREVIOUS_WEEKS weeks before the window."""
    until = period.since - timedelta(days=1)
    found = figures.distributions(client, site, key="step", manager=manager, since=until - timedelta(
        weeks=PREVIOUS_WEEKS) + timedelta(days=1), until=until, metric=settings.analysis_metric, detail=False)
    return {step: (d.n, d.median_ms) for step, d in found.by_key.items()}


def compared(now_ms: float | None, before: tuple[int, float | None] | None, period: Period) -> dict[str, Any]:
    """The window's median against the previous weeks': "faster", "slower" or "same" (within SAME)."""
    until = period.since - timedelta(days=1)
    n, median = before or (0, None)
    change = None if now_ms is None or not median else (now_ms - median) / median
    trend = None if change is None else "same" if abs(change) < SAME else "slower" if change > 0 else "faster"
    return {"since": until - timedelta(weeks=PREVIOUS_WEEKS) + timedelta(days=1), "until": until, "n": n,
            "median_ms": median, "change": None if change is None else round(change, 4), "trend": trend}


def teammates_medians(client: Client, settings: Settings, site: str, manager: str) -> dict[str, dict[str, Any]]:
    """Step -> the typical median of the manager's teammates in the latest analysis (the median of their
    medians, each on enough sessions), only where at least `peer_group_min` teammates are counted:
    fewer, and the figure would tell the manager about one or two people they can name."""
    members = teams.members(client, site)
    team = members.get(manager, "")
    if not team:
        return {}
    mates = sorted(m for m, t in members.items() if t == team and m != manager)
    if len(mates) < settings.peer_group_min:
        return {}
    by_step: dict[str, list[float]] = {}
    for row in figures.latest_stats(client, site, managers=mates).rows:
        if row.get("median_ms") is not None and (row.get("n") or 0) >= settings.analysis_min_sessions:
            by_step.setdefault(row["step"], []).append(float(row["median_ms"]))
    return {step: {"median_ms": statistics.median(values), "people": len(values)}
            for step, values in by_step.items() if len(values) >= settings.peer_group_min}


def attention(data: dict[str, Any]) -> dict[str, Any]:
    """What needs the manager's attention: their active drawdowns (largest time lost first), then the
    steps on watch; `all_clear` when there is none, with how many steps the analysis judged."""
    drawdowns = [{"flag_id": f["flag_id"], "kind": f["kind"], "step": f["step"], "step_title": f["step_title"],
                  "status": f["status"], "start_date": f["start_date"], "start_at_least": f["start_at_least"],
                  "opened_at": f["opened_at"], "minutes_lost_per_week": f["minutes_lost_per_week"]}
                 for f in data["flags"] if f["status"] in ACTIVE_FLAG and f["kind"] in ATTENTION_KINDS]
    drawdowns.sort(key=lambda d: -(d["minutes_lost_per_week"] or 0))
    flagged = {d["step"] for d in drawdowns}
    watch = [{"step": s["step"], "step_title": s["title"],
              "minutes_above_reference_per_week": s["minutes_above_reference_per_week"]}
             for s in data["steps"] if s["status"] == "watch" and s["step"] not in flagged]
    judged = [s for s in data["steps"] if s["status"] in ("ok", "slow", "fast", "watch")]
    return {"all_clear": bool(data["analysis"]) and not drawdowns and not watch and bool(judged),
            "drawdowns": drawdowns, "watch": watch, "steps_judged": len(judged),
            "steps_on_track": sum(1 for s in judged if s["status"] == "ok"), "analysed": bool(data["analysis"])}


def transparency(client: Client, settings: Settings, user: User, site: str) -> dict[str, Any]:
    """What stepwatch collects about this manager, for how long, who can see it (by name, by the rule
    the pages apply: access.scope_of) and what it is for: the facts the page states in words."""
    process = processes.latest(client, site)
    seen_by: dict[str, list[str]] = {"admin": [], "director": [], "trainer": []}
    for account in users.list_users(client):
        if account.disabled or account.role not in seen_by:
            continue
        if access.scope_of(client, account, site).sees_manager(user.manager_id):
            seen_by[account.role].append(account.name)
    return {
        "collected": {"per_step": ["active", "idle", "hidden"], "also": ["path", "customer_pseudonym", "session"],
                      "never": list(NEVER_COLLECTED)},
        "idle_after_ms": process.tracker.idle_ms if process else None,
        "compared_time": settings.analysis_metric,
        "window_days": settings.analysis_window_days,
        "retention_days": settings.retention_days,
        "seen_by": {"you": user.name, "admins": seen_by["admin"], "directors": seen_by["director"],
                    "trainers": seen_by["trainer"]},
        "purpose": ["find_time_lost", "coaching"],
        "automatic_decisions": False,
        "peer_group_min": settings.peer_group_min,
    }


def note_weeks(period: Period) -> list[date]:
    """The Mondays a note can be put on from the page: the trend's weeks, newest first."""
    return [period.trend_since + timedelta(weeks=i) for i in reversed(range(TREND_WEEKS))]


async def me_page(request: web.Request, who: Viewer) -> Page:
    """A manager's own figures: what needs attention, each step against the band and their own previous
    weeks, what stepwatch measures and who sees it, their notes (manager accounts only)."""
    if not who.user.manager_id:
        raise Forbidden("this manager account is linked to no manager id: stepwatch users add ... --manager-id",
                        code="no_manager_id")
    site, names = await chosen_site(request)
    settings = request.app[app_keys.SETTINGS]
    period = period_of(request.query, settings)
    manager = who.user.manager_id
    # independent reads, at once on the store's threads (10 M visits: 101 -> 80 ms at p50, 168 -> 133 on 2 shards)
    found, before, teammates, facts, coaching = await asyncio.gather(
        run(request, manager_data, settings, who.user, site, manager, period, unknown_is_404=False),
        run(request, previous_medians, settings, site, manager, period),
        run(request, teammates_medians, settings, site, manager),
        run(request, transparency, settings, who.user, site),
        run(request, coaching_pages.history, settings, who.user, site, manager))
    data = my_figures(found, before, teammates, facts, period)
    data["sites"] = names
    data["coaching"] = coaching
    _ = Translator(who.user.language)
    table, columns = csv_table(request.query)
    return Page("me.html", data, title="me.title", table=table, columns=columns,
                context={"charts": step_charts(_, data), "segment": segment,
                         "coaching_charts": coaching_pages.history_charts(_, data["coaching"]),
                         "titles": {s["step"]: s["title"] for s in data["steps"]}})


# The manager page's answer (FIGURES) and what My figures adds to it.
ME = {**FIGURES, "required": sorted({*FIGURES["required"], "attention", "comparison", "transparency", "note_weeks"}),
      "properties": {**FIGURES["properties"], **answer(attention="object", comparison="object",
                                                       transparency="object", note_weeks="array")["properties"]}}


def register(app: web.Application) -> None:
    # other roles get 403 ("the admin role may not open this"): they have no figures of their own
    add_page(app, "/me", me_page, roles=("manager",), name="me", query=(SITE, *PERIOD, TABLE), response=ME)
