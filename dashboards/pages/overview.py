"""Overview: the headline numbers, a heatmap of managers x steps against the bands, the costliest
drawdowns; filtered by site, team, step and dates. Admins see every team, directors the teams they lead.

The figures are aggregated in ClickHouse (dashboards/overview_figures.py): without dates, the
latest analysis run's stored figures; with dates, quantiles over the daily pre-aggregate.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from clickhouse_connect.driver.client import Client

from analysis.bands import Band, BandVersion, band_in_force
from dashboards import overview_figures
from dashboards.access import Scope, scope_of
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.web import SITE, Page, add_page, answer, choice, chosen_site, day, day_param, run, text
from kernel import app_keys, band_versions, flag_store, managers, processes, teams
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.users import User

TOP_DRAWDOWNS = 10
MAX_RANGE_DAYS = 366
ROLES = ("admin", "director")
# How far above the maximum a median is, as a share of the maximum: the upper limits of grades 1 and 2.
ABOVE_GRADES = (1.25, 1.5)

# The message keys of a flag's words, looked up by value (written out so the catalog test sees each one).
FLAG_WORDS = {
    "kind": {"slow": "drawdowns.kind_slow", "fast": "drawdowns.kind_fast", "systemic": "drawdowns.kind_systemic"},
    "status": {"open": "drawdowns.status_open", "acknowledged": "drawdowns.status_acknowledged",
               "coaching": "drawdowns.status_coaching", "resolved": "drawdowns.status_resolved",
               "dismissed": "drawdowns.status_dismissed"},
    "action": {"ack": "drawdowns.action_ack", "resolve": "drawdowns.action_resolve",
               "dismiss": "drawdowns.action_dismiss", "reopen": "drawdowns.action_reopen"},
    "caption": {"impact": "drawdowns.caption_impact", "age": "drawdowns.caption_age"},
}
HEATMAP_COLUMNS = ["team", "manager", "manager_name", "step", "n", "median_ms", "p90_ms", "min_ms", "reference_ms",
                   "max_ms", "grade", "status", "minutes_lost_per_week", "flag_id"]
DRAWDOWN_COLUMNS = ["flag_id", "kind", "status", "team", "manager", "manager_name", "managers", "step", "median_ms",
                    "reference_ms", "max_ms", "minutes_lost_per_week", "opened_at", "start_date"]


def segment(value: object) -> str:
    """A value as one path segment of a link (/managers/{id}): a '/' or '?' in a manager id stays inside."""
    return quote(str(value), safe="")


def grade(median_ms: float | None, min_ms: int | None, max_ms: int | None, *, n: int = 0,
          min_sessions: int = 0) -> str:
    """Where a median sits against its band: below, within, above-1..3 (how far above the maximum),
    few (too few sessions to judge, as the analysis says), or none (no figure or no band)."""
    if median_ms is None or min_ms is None or max_ms is None:
        return "none"
    if n < min_sessions:
        return "few"
    if median_ms < min_ms:
        return "below"
    if median_ms <= max_ms:
        return "within"
    ratio = median_ms / max_ms
    return "above-1" if ratio <= ABOVE_GRADES[0] else "above-2" if ratio <= ABOVE_GRADES[1] else "above-3"


class Labels:
    """Durations, numbers and dates for the language, each distinct shown value formatted once per page.

    Formatting one number with Babel costs about 40 us; a page of 2,000 cells or 300 flags would
    spend most of its time on it, while the distinct values shown (rounded as displayed) are few.
    """

    def __init__(self, translator: Translator):
        self._ = translator
        self._seen: dict[tuple[Any, ...], str] = {}

    def _once(self, key: tuple[Any, ...], make: Any) -> str:
        if key not in self._seen:
            self._seen[key] = make()
        return self._seen[key]

    def minutes(self, ms: float | None) -> str:
        if ms is None:
            return self._.minutes(None)
        shown = round(ms / 1000) if abs(ms) < 60_000 else round(ms / 60_000, 1)
        return self._once(("min", abs(ms) < 60_000, shown), lambda: self._.minutes(ms))

    def num(self, value: float | None, digits: int = 0) -> str:
        if value is None:
            return self._.num(None)
        return self._once(("num", round(value, digits), digits), lambda: self._.num(value, digits))

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return self._.date(None)
        day = value.date() if isinstance(value, datetime) else value
        return self._once(("date", day), lambda: self._.date(day))


@dataclass(frozen=True)
class Lookups:
    """The small tables a page filters by, read together in one trip to the worker thread."""

    scope: Scope
    team_names: list[str]  # the teams this viewer may pick
    steps: list[dict[str, str]]  # the process's steps in order: key, title
    run: overview_figures.StoredRun | None
    bands: dict[str, list[BandVersion]]
    names: dict[str, str]  # manager id -> name, for the managers the directory names (kernel/managers.py)


def lookups(client: Client, user: User, site: str, *, with_run: bool = True, with_bands: bool = True) -> Lookups:
    scope = scope_of(client, user, site)
    every = sorted(teams.list_teams(client, site)) if site else []
    names = every if scope.teams is None else sorted(t for t in every if t in scope.teams)
    process = processes.latest(client, site) if site else None
    steps = [{"key": s.key, "title": s.title} for s in process.steps] if process else []
    bands: dict[str, list[BandVersion]] = defaultdict(list)
    if with_bands and site:
        for v in band_versions.versions(client, site):
            bands[v.step].append(BandVersion(v.effective_from, v.team or None, Band(v.min_ms, v.reference_ms,
                                                                                       v.max_ms)))
    run_ = overview_figures.latest_run(client, site) if with_run and site else None
    return Lookups(scope, names, steps, run_, dict(bands), managers.names(client, site) if site else {})


def team_filter(scope: Scope, team: str, team_names: list[str]) -> None:
    """A team the viewer may not see is refused (403), an unknown one is 404."""
    if not team:
        return
    if not scope.sees_team(team):
        raise Forbidden(f"team {team!r} is not one of the teams your account may see")
    if team not in team_names:
        raise NotFound(f"no team {team!r}")


def managers_in_view(scope: Scope, team: str) -> list[str] | None:
    """The managers whose figures the page shows; None = every manager of the site (admin, no team)."""
    if team:
        return sorted(m for m, t in scope.team_of.items() if t == team and scope.sees_manager(m))
    if scope.managers is None:
        return None
    return sorted(scope.managers)


def teams_in_view(scope: Scope, team: str) -> list[str] | None:
    if team:
        return [team]
    return None if scope.teams is None else sorted(scope.teams)


async def overview_page(request: web.Request, who: Viewer) -> Page:
    settings = request.app[app_keys.SETTINGS]
    q = request.query
    site, site_names = await chosen_site(request)
    team, step = q.get("team", ""), q.get("step", "")
    since, until = day_param(q.get("since", ""), "since"), day_param(q.get("until", ""), "until")
    found = await run(request, lookups, who.user, site)
    team_filter(found.scope, team, found.team_names)
    step_keys = [s["key"] for s in found.steps]
    if step and step_keys and step not in step_keys:
        raise NotFound(f"the process of site {site!r} has no step {step!r}")
    managers, flag_teams = managers_in_view(found.scope, team), teams_in_view(found.scope, team)

    today = datetime.now(UTC).date()
    if since is None and until is None and found.run is not None:
        source, since, until = "analysis", found.run.window_start, found.run.window_end
        cells_call = run(request, overview_figures.stored_cells, site, found.run.run_at, managers=managers, step=step)
    else:
        source = "range"
        until = until or today
        since = since or until - timedelta(days=settings.analysis_window_days - 1)
        if since > until:
            raise InvalidInput("since must be on or before until", field="since")
        if (until - since).days >= MAX_RANGE_DAYS:
            raise InvalidInput(f"choose at most {MAX_RANGE_DAYS} days", field="since")
        cells_call = run(request, overview_figures.range_cells, site, since, until, managers=managers, step=step,
                         metric=settings.analysis_metric)
    raw_cells, kpis, top = await asyncio.gather(
        cells_call,
        run(request, overview_figures.headline, site, since, until, managers=managers, teams=flag_teams),
        run(request, overview_figures.find_flags, site, teams=flag_teams, statuses=overview_figures.ACTIVE_STATUSES,
            step=step, limit=TOP_DRAWDOWNS, count=False),
    )

    min_sessions = settings.analysis_min_sessions
    cells = [_cell(c, found, source, until, min_sessions) for c in raw_cells]
    shown_steps = [s for s in found.steps if not step or s["key"] == step]
    shown_steps += [{"key": k, "title": k} for k in sorted({c["step"] for c in cells} - set(step_keys))]
    data = {
        "site": site,
        "sites": site_names,
        "filters": {"team": team, "step": step, "since": q.get("since") or None, "until": q.get("until") or None},
        "window": {"since": since, "until": until, "source": source,
                   "analysed_at": found.run.run_at if source == "analysis" and found.run else None},
        "teams": found.team_names,
        "steps": shown_steps,
        "step_options": found.steps,
        "min_sessions": min_sessions,
        "kpis": kpis,
        "heatmap": cells,
        "top_drawdowns": [_drawdown(f, found.names) for f in top.flags],
    }
    labels = Labels(Translator(who.user.language))
    groups = _groups(cells, shown_steps, labels, found.names)
    table = "top_drawdowns" if q.get("table") == "top_drawdowns" else "heatmap"
    return Page("overview.html", data, title="overview.title", table=table,
                columns=DRAWDOWN_COLUMNS if table == "top_drawdowns" else HEATMAP_COLUMNS,
                context={"groups": groups, "managers_shown": sum(len(g["rows"]) for g in groups), "seg": segment,
                         "words": FLAG_WORDS,
                         "step_titles": {s["key"]: s["title"] for s in [*found.steps, *shown_steps]},
                         "resolve_seconds": {k: None if kpis[f"{k}_hours_to_resolve"] is None
                                             else kpis[f"{k}_hours_to_resolve"] * 3600 for k in ("median", "p90")}})


def _cell(row: dict[str, Any], found: Lookups, source: str, until: date, min_sessions: int) -> dict[str, Any]:
    team = found.scope.team_of.get(row["manager"], row.get("team", ""))
    if source == "analysis":
        band = {"min_ms": row["min_ms"], "reference_ms": row["reference_ms"], "max_ms": row["max_ms"]}
        status, lost, flag_id = row["status"], row["minutes_lost_per_week"], row["flag_id"]
    else:
        version = band_in_force(found.bands.get(row["step"], []), until, team or None)
        band = ({"min_ms": version.band.min_ms, "reference_ms": version.band.reference_ms,
                 "max_ms": version.band.max_ms} if version else {"min_ms": None, "reference_ms": None,
                                                                  "max_ms": None})
        status, lost, flag_id = None, None, None
    median = None if row["median_ms"] is None else round(float(row["median_ms"]), 1)
    p90 = None if row["p90_ms"] is None else round(float(row["p90_ms"]), 1)
    n = int(row["n"])
    return {"team": team, "manager": row["manager"], "manager_name": found.names.get(row["manager"]),
            "step": row["step"], "n": n, "median_ms": median,
            "p90_ms": p90, **band,
            "grade": grade(median, band["min_ms"], band["max_ms"], n=n, min_sessions=min_sessions),
            "status": status, "minutes_lost_per_week": lost, "flag_id": flag_id}


def _drawdown(f: flag_store.StoredFlag, names: dict[str, str]) -> dict[str, Any]:
    return {"flag_id": f.flag_id, "kind": f.kind, "status": f.status, "team": f.team, "manager": f.manager,
            **named(f.manager, f.managers, names), "managers": list(f.managers),
            "step": f.step, "median_ms": f.median_ms, "min_ms": f.min_ms,
            "reference_ms": f.reference_ms, "max_ms": f.max_ms,
            "minutes_lost_per_week": round(f.minutes_lost_per_week, 1), "opened_at": f.opened_at,
            "start_date": f.start_date,
            "grade": grade(f.median_ms, f.min_ms, f.max_ms)}


def named(manager: str, of_flag: tuple[str, ...] | list[str], names: dict[str, str]) -> dict[str, Any]:
    """A flag's names beside its ids in a JSON twin: `manager_name` (None for a systemic flag or a manager
    the directory does not name) and `manager_names`, one per id of `managers` (None where unknown)."""
    return {"manager_name": names.get(manager) if manager else None,
            "manager_names": [names.get(m) for m in of_flag]}


def _groups(cells: list[dict[str, Any]], steps: list[dict[str, str]], labels: Labels,
            names: dict[str, str]) -> list[dict[str, Any]]:
    """The heatmap for the template: per team, (manager, name, cells) rows in the order of their names,
    with one (grade, label) or None per step column. Plain tuples: the template reads 2,000 cells, and
    every lookup counts."""
    by_manager: dict[tuple[str, str], dict[str, tuple[str, str]]] = defaultdict(dict)
    for c in cells:
        if c["median_ms"] is not None:
            by_manager[(c["team"], c["manager"])][c["step"]] = (c["grade"], labels.minutes(c["median_ms"]))
    groups: dict[str, list[tuple[str, str | None, list[tuple[str, str] | None]]]] = defaultdict(list)

    def order(item: tuple[tuple[str, str], Any]) -> tuple[bool, str, str, str]:
        team, manager = item[0]
        return team == "", team, managers.display(names, manager).casefold(), manager

    for (team, manager), row in sorted(by_manager.items(), key=order):
        groups[team].append((manager, names.get(manager), [row.get(s["key"]) for s in steps]))
    return [{"team": team, "rows": rows} for team, rows in groups.items()]


def register(app: web.Application) -> None:
    add_page(app, "/overview", overview_page, roles=ROLES, name="overview", query=(
        SITE, text("team", "one team's managers"), text("step", "one step of the process"),
        day("since", "first day of a chosen window"), day("until", "last day of a chosen window"),
        choice("table", ("heatmap", "top_drawdowns"), "which table ?format=csv exports")),
             response=answer(site="string", sites="array", filters="object", window="object", teams="array",
                             steps="array", step_options="array", min_sessions="integer", kpis="object",
                             heatmap="array", top_drawdowns="array"))
