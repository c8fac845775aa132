"""Overview: the answers first, then where to look. A headline (hours a week lost on the open
drawdowns against a week earlier, drawdowns new and resolved this week, coaching under way and what
it saved, money when the site has a cost per hour), then a ranking: the costliest drawdowns, the
steps where many managers drift, the pairs on watch, possible skipped work (fast flags), and the
heatmap of managers x steps with each cell's verdict; filtered by site, team, step and dates. Admins
see every team, directors the teams they lead.

The figures are aggregated in ClickHouse (dashboards/overview_figures.py): without dates, the
latest analysis run's stored figures; with dates, quantiles over the daily pre-aggregate (the
verdicts and the ranking stay those of the latest analysis).
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
from kernel import app_keys, band_versions, flag_store, managers, processes, sites, teams
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.users import User

TOP_DRAWDOWNS = 10
WATCH_SHOWN = 20  # pairs on watch listed (the rest are counted)
# A step "drifts" in a team when at least this share of its judged managers (and at least DRIFT_MIN of
# them) are slow or on watch: a problem of the step or the team's way of working, not of one person.
DRIFT_SHARE, DRIFT_MIN = 0.4, 2
JUDGED = ("ok", "slow", "fast", "watch")
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
    cost_per_hour: float | None = None  # what an hour of a manager's time costs the site; None: not set
    currency: str = ""


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
    cost, currency = None, ""
    if site:
        found = sites.get_site(client, site)
        cost, currency = getattr(found, "cost_per_hour", None), getattr(found, "currency", "")
    return Lookups(scope, names, steps, run_, dict(bands), managers.names(client, site) if site else {},
                   cost if cost and currency else None, currency if cost and currency else "")


def team_filter(scope: Scope, team: str, team_names: list[str]) -> None:
    """A team the viewer may not see is refused (403), an unknown one is 404."""
    if not team:
        return
    if not scope.sees_team(team):
        raise Forbidden(f"team {team!r} is not one of the teams your account may see", field="team",
                        code="team_not_yours", values={"team": team})
    if team not in team_names:
        raise NotFound(f"no team {team!r}", field="team", code="no_team", values={"team": team})


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
        raise NotFound(f"the process of site {site!r} has no step {step!r}", field="step", code="no_step",
                       values={"step": step})
    managers, flag_teams = managers_in_view(found.scope, team), teams_in_view(found.scope, team)

    now = datetime.now(UTC)
    today = now.date()
    latest_cells = None
    if since is None and until is None and found.run is not None:
        source, since, until = "analysis", found.run.window_start, found.run.window_end
    else:
        source = "range"
        until = until or today
        since = since or until - timedelta(days=settings.analysis_window_days - 1)
        if since > until:
            raise InvalidInput("since must be on or before until", field="since", code="since_after_until")
        if (until - since).days >= MAX_RANGE_DAYS:
            raise InvalidInput(f"choose at most {MAX_RANGE_DAYS} days", field="since", code="window_too_long",
                               values={"n": str(MAX_RANGE_DAYS)})
    if found.run is not None:  # the verdicts and the ranking: always the latest analysis'
        latest_cells = run(request, overview_figures.stored_cells, site, found.run.run_at, managers=managers,
                           step=step)
    if source == "analysis":
        cells_call = latest_cells
    else:
        cells_call = run(request, overview_figures.range_cells, site, since, until, managers=managers, step=step,
                         metric=settings.analysis_metric)
    calls = [
        cells_call,
        run(request, overview_figures.headline, site, since, until, managers=managers, teams=flag_teams),
        run(request, overview_figures.find_flags, site, teams=flag_teams, statuses=overview_figures.ACTIVE_STATUSES,
            step=step, count=False),
        run(request, overview_figures.decisions, site, now, found.run.window_end if found.run else None,
            managers=managers, teams=flag_teams, step=step),
    ]
    if source == "range" and latest_cells is not None:
        calls.append(latest_cells)
    raw_cells, kpis, active, decided, *latest = await asyncio.gather(*calls)
    stored = raw_cells if source == "analysis" else (latest[0] if latest else [])

    min_sessions = settings.analysis_min_sessions
    cells = [_cell(c, found, source, until, min_sessions) for c in raw_cells]
    pairs = {(c["manager"], c["step"]): c for c in
             (cells if source == "analysis" else [_cell(c, found, "analysis", until, min_sessions) for c in stored])}
    shown_steps = [s for s in found.steps if not step or s["key"] == step]
    shown_steps += [{"key": k, "title": k} for k in sorted({c["step"] for c in cells} - set(step_keys))]
    step_titles = {s["key"]: s["title"] for s in [*found.steps, *shown_steps]}
    drawdowns = [f for f in active.flags if f.kind in overview_figures.DRAWDOWN_KINDS]
    fast = [f for f in active.flags if f.kind == "fast"]
    systemic = [f for f in drawdowns if f.kind == "systemic"]
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
        "headline": _headline(decided, found),
        "kpis": kpis,
        "heatmap": cells,
        "top_drawdowns": [_drawdown(f, found.names, pairs) for f in drawdowns[:TOP_DRAWDOWNS]],
        "drifting_steps": _drifting(pairs.values(), systemic, found.scope),
        "watch": _watch(pairs.values(), found.names),
        "possible_skipped_work": [_drawdown(f, found.names, pairs) for f in fast[:TOP_DRAWDOWNS]],
    }
    labels = Labels(Translator(who.user.language))
    groups = _groups(cells, shown_steps, labels, found.names, source)
    table = "top_drawdowns" if q.get("table") == "top_drawdowns" else "heatmap"
    return Page("overview.html", data, title="overview.title", table=table,
                columns=DRAWDOWN_COLUMNS if table == "top_drawdowns" else HEATMAP_COLUMNS,
                context={"groups": groups, "managers_shown": sum(len(g["rows"]) for g in groups), "seg": segment,
                         "words": FLAG_WORDS, "step_titles": step_titles, "watch_shown": WATCH_SHOWN,
                         "resolve_seconds": {k: None if kpis[f"{k}_hours_to_resolve"] is None
                                             else kpis[f"{k}_hours_to_resolve"] * 3600 for k in ("median", "p90")}})


def _headline(decided: dict[str, Any], found: Lookups) -> dict[str, Any]:
    """The JSON twin's headline: hours, not minutes, as a director reads them."""
    hours = decided["minutes_lost_per_week"] / 60
    previous = decided["minutes_lost_per_week_previous"]
    return {
        "hours_lost_per_week": round(hours, 2),
        "hours_lost_per_week_previous": None if previous is None else round(previous / 60, 2),
        "previous_until": decided["previous_until"],
        "drawdowns": decided["drawdowns"],
        "new_this_week": decided["new_this_week"],
        "resolved_this_week": decided["resolved_this_week"],
        "possible_skipped_work": decided["fast_flags"],
        "coaching_active": decided["coaching_active"],
        "coaching_evaluated": decided["coaching_evaluated"],
        "hours_saved_per_week": round(decided["minutes_saved_per_week"] / 60, 2),
        "cost_per_hour": found.cost_per_hour,
        "currency": found.currency or None,
        "cost_lost_per_week": None if found.cost_per_hour is None else round(hours * found.cost_per_hour, 2),
        "cost_lost_per_week_previous": None if found.cost_per_hour is None or previous is None
        else round(previous / 60 * found.cost_per_hour, 2),
    }


def _drifting(pairs: Any, systemic: list[flag_store.StoredFlag], scope: Scope) -> list[dict[str, Any]]:
    """Steps where many managers drift: each active systemic flag, and each team x step where at least
    DRIFT_SHARE of the judged managers are slow or on watch; the most managers first."""
    count: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"slow": 0, "watch": 0, "judged": 0})
    for c in pairs:
        if c["status"] in JUDGED:
            counts = count[(c["team"], c["step"])]
            counts["judged"] += 1
            if c["status"] in ("slow", "watch"):
                counts[c["status"]] += 1
    flags = {(f.team, f.step): f for f in systemic}
    found = []
    for (team, step), n in count.items():
        drifting = n["slow"] + n["watch"]
        if (team, step) in flags or (drifting >= DRIFT_MIN and drifting >= DRIFT_SHARE * n["judged"]):
            flag = flags.pop((team, step), None)
            found.append({"team": team, "step": step, "slow": n["slow"], "watch": n["watch"], "managers": n["judged"],
                          "flag_id": flag.flag_id if flag else None,
                          "minutes_lost_per_week": round(flag.minutes_lost_per_week, 1) if flag else None})
    for (team, step), flag in flags.items():  # a systemic flag whose pairs the view does not hold
        found.append({"team": team, "step": step, "slow": len(flag.managers), "watch": 0,
                      "managers": len(flag.managers), "flag_id": flag.flag_id,
                      "minutes_lost_per_week": round(flag.minutes_lost_per_week, 1)})
    return sorted(found, key=lambda d: (d["flag_id"] is None, -(d["slow"] + d["watch"]) / max(d["managers"], 1),
                                        d["team"], d["step"]))


def _watch(pairs: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    """Pairs on watch (drifting toward the band's maximum, not flagged): never counted as time lost."""
    found = [{"team": c["team"], "manager": c["manager"], "manager_name": names.get(c["manager"]),
              "step": c["step"], "median_ms": c["median_ms"], "max_ms": c["max_ms"]}
             for c in pairs if c["status"] == "watch"]
    return sorted(found, key=lambda c: (-(c["median_ms"] or 0) / (c["max_ms"] or 1), c["manager"], c["step"]))


def _cell(row: dict[str, Any], found: Lookups, source: str, until: date, min_sessions: int) -> dict[str, Any]:
    team = found.scope.team_of.get(row["manager"], row.get("team", ""))
    if source == "analysis":
        band = {"min_ms": row["min_ms"], "reference_ms": row["reference_ms"], "max_ms": row["max_ms"]}
        status, lost, flag_id = row["status"] or None, row["minutes_lost_per_week"], row["flag_id"]
        if status != "slow":
            lost = 0.0 if lost is not None else None  # time lost is a slow pair's alone (docs/analysis.md)
        peers = ({"slower_than": int(row["peers_slower_than"]), "of": int(row["peers_of"])}
                 if row.get("peers_of") else None)
        start, at_least = row.get("start_date"), row.get("start_at_least")
    else:
        version = band_in_force(found.bands.get(row["step"], []), until, team or None)
        band = ({"min_ms": version.band.min_ms, "reference_ms": version.band.reference_ms,
                 "max_ms": version.band.max_ms} if version else {"min_ms": None, "reference_ms": None,
                                                                  "max_ms": None})
        status, lost, flag_id, peers, start, at_least = None, None, None, None, None, None
    median = None if row["median_ms"] is None else round(float(row["median_ms"]), 1)
    p90 = None if row["p90_ms"] is None else round(float(row["p90_ms"]), 1)
    n = int(row["n"])
    return {"team": team, "manager": row["manager"], "manager_name": found.names.get(row["manager"]),
            "step": row["step"], "n": n, "median_ms": median,
            "p90_ms": p90, **band,
            "grade": grade(median, band["min_ms"], band["max_ms"], n=n, min_sessions=min_sessions),
            "status": status, "minutes_lost_per_week": lost, "flag_id": flag_id, "peers": peers,
            "start_date": start or None, "start_at_least": at_least}


def _drawdown(f: flag_store.StoredFlag, names: dict[str, str],
              pairs: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """A flag for the ranking, with the verdict of its pair in the latest analysis (a systemic flag's
    is `slow`) and, for a slow pair inside the band, how many teammates it is slower than."""
    pair = (pairs or {}).get((f.manager, f.step)) if f.manager else None
    verdict = pair["status"] if pair and pair["status"] else ("fast" if f.kind == "fast" else "slow")
    inside = f.median_ms is not None and f.max_ms is not None and f.median_ms <= f.max_ms
    return {"flag_id": f.flag_id, "kind": f.kind, "status": f.status, "team": f.team, "manager": f.manager,
            "verdict": verdict, "peers": pair["peers"] if pair and inside and verdict == "slow" else None,
            "start_at_least": f.start_at_least,
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
            names: dict[str, str], source: str) -> list[dict[str, Any]]:
    """The heatmap for the template: per team, (manager, name, cells) rows in the order of their names,
    with one (mark, median, flag id, note) or None per step column. The mark is the verdict of the
    latest analysis ("v-slow"...), or with chosen dates the grade against the band; the note, a slow
    pair's median inside the band: how many teammates it is slower than. Plain tuples: the template
    reads 2,000 cells, and every lookup counts."""
    Cell = tuple[str, str, str | None, str | None]
    by_manager: dict[tuple[str, str], dict[str, Cell]] = defaultdict(dict)
    _ = labels._
    notes: dict[tuple[int, int], str] = {}
    for c in cells:
        if c["median_ms"] is None:
            continue
        note = None
        if source == "analysis":
            mark = f"v-{c['status'] or 'none'}"
            peers = c["peers"]
            if c["status"] == "slow" and peers and c["max_ms"] is not None and c["median_ms"] <= c["max_ms"]:
                key = (peers["slower_than"], peers["of"])
                if key not in notes:
                    notes[key] = _.plural("verdict.slower_than_peers", key[1], k=labels.num(key[0]),
                                          n=labels.num(key[1]))
                note = notes[key]
        else:
            mark = c["grade"]
        by_manager[(c["team"], c["manager"])][c["step"]] = (mark, labels.minutes(c["median_ms"]), c["flag_id"], note)
    groups: dict[str, list[tuple[str, str | None, list[Cell | None]]]] = defaultdict(list)

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
                             steps="array", step_options="array", min_sessions="integer", headline="object",
                             kpis="object", heatmap="array", top_drawdowns="array", drifting_steps="array",
                             watch="array", possible_skipped_work="array"))
