"""Flow: how service sessions move through the steps, and what rework costs.

    GET /flow?site=&team=&manager=&since=&until=      (JSON twin: /api/v1/flow)

The process map (a directly-follows graph, dashboards/flow_svg.py) with each edge's transitions and
median time, the most frequent paths (variants), per step the rework rate (sessions that come back
to it) and the ping-pong pairs (A -> B -> A). For a team, each manager's rework against their
teammates in minutes per week; for one manager, their own map with the edges they take much more
or less often than their teammates highlighted, and their rework minutes per step. The rules are
analysis/paths.py's (docs/analysis.md#paths-and-rework); the figures come from the raw visits
(dashboards/flow_figures.py), 30 days ending today unless dates are chosen.

Who: the scoping of the manager page (access.scope_of): an admin every manager, a director the
teams they lead, a trainer the managers assigned to them, a manager themselves. A manager's
teammates are compared with as one aggregate, never one by one, and only when the viewer may see
them all or they are at least STEPWATCH_PEER_GROUP_MIN people.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from analysis import paths
from dashboards import flow_figures, flow_svg
from dashboards.access import Scope, scope_of
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.web import API, SITE, Page, add_page, answer, choice, chosen_site, day, day_param, run, text
from kernel import app_keys, managers, processes, teams
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.users import User

ROLES = ("admin", "director", "trainer", "manager")
DEFAULT_DAYS = 30
MAX_DAYS = 366
VARIANTS_SHOWN = 10
PING_PONG_SHOWN = 10
# Edges drawn on the map: those taken in at least this share of the sessions, the most frequent
# MAX_DRAWN of them, and every deviation; the table under the map lists them all.
DRAWN_SHARE, MAX_DRAWN = 0.01, 40
TABLES = {
    "variants": ["path", "sessions", "share", "median_ms", "rework"],
    "edges": ["source", "target", "transitions", "per_session", "median_ms", "teammates_per_session", "deviation"],
    "steps": ["step", "sessions", "reworked", "rate", "teammates_rate", "median_ms", "median_return_ms"],
    "managers": ["manager", "manager_name", "team", "sessions", "rework_rate", "teammates_rework_rate",
                 "rework_minutes_per_week"],
}


@dataclass(frozen=True)
class Lookups:
    scope: Scope
    team_names: list[str]
    steps: list[dict[str, str]]
    names: dict[str, str]
    team_titles: dict[str, str]  # team name -> title, as pages show a team


def lookups(client: Client, user: User, site: str) -> Lookups:
    scope = scope_of(client, user, site)
    titles = teams.list_teams(client, site) if site else {}
    every = sorted(titles)
    visible = every if scope.teams is None else [t for t in every if t in scope.teams]
    process = processes.latest(client, site) if site else None
    steps = [{"key": s.key, "title": s.title} for s in process.steps] if process else []
    return Lookups(scope, visible, steps, managers.names(client, site) if site else {}, titles)


def window_of(since_text: str, until_text: str, today: date) -> tuple[date, date]:
    until = day_param(until_text, "until") or today
    since = day_param(since_text, "since") or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise InvalidInput("since must be on or before until", field="since", code="since_after_until")
    if (until - since).days >= MAX_DAYS:
        raise InvalidInput(f"choose at most {MAX_DAYS} days", field="since", code="window_too_long",
                           values={"n": str(MAX_DAYS)})
    return since, until


@dataclass(frozen=True)
class View:
    """Whose sessions the page reads (`read`: None = every manager) and whom it shows."""

    manager: str  # "" = a group
    team: str
    read: list[str] | None
    baseline: bool  # a manager is compared with their teammates


def view_of(found: Lookups, user: User, team: str, manager: str, peer_group_min: int, since: date, until: date
            ) -> View:
    scope = found.scope
    if team and not scope.sees_team(team):
        raise Forbidden(f"team {team!r} is not one of the teams your account may see", field="team",
                        code="team_not_yours", values={"team": team})
    if user.role == "manager" and not manager:
        manager = user.manager_id or ""
    if manager:
        scope.require_manager(manager)
        if manager not in scope.team_of and manager not in found.names and user.role != "manager":
            raise NotFound(f"no sessions of manager {manager!r} from {since} to {until}", field="manager",
                           code="no_sessions", values={"since": since.isoformat(), "until": until.isoformat()})
        own_team = scope.team_of.get(manager, "")
        mates = [m for m, t in scope.team_of.items() if own_team and t == own_team and m != manager]
        baseline = bool(mates) and (all(scope.sees_manager(m) for m in mates) or len(mates) >= peer_group_min)
        return View(manager, own_team, sorted([manager, *mates]) if baseline else [manager], baseline)
    if team:
        if team not in found.team_names:
            raise NotFound(f"no team {team!r}", field="team", code="no_team", values={"team": team})
        return View("", team, sorted(m for m, t in scope.team_of.items() if t == team and scope.sees_manager(m)),
                    False)
    return View("", "", None if scope.managers is None else sorted(scope.managers), False)


def _rate(variants: list[tuple[tuple[str, ...], int]]) -> tuple[int, int]:
    """Sessions, and those with any rework."""
    total = sum(n for _, n in variants)
    return total, sum(n for p, n in variants if paths.reworked(p))


def flow_data(found: Lookups, view: View, since: date, until: date, moves: dict[str, list[dict[str, Any]]]
              ) -> dict[str, Any]:
    """The page's data from the reader's rows (flow_figures.flow; pure: no storage)."""
    variant_rows = moves["variants"]
    titles = {s["key"]: s["title"] for s in found.steps}
    days = (until - since).days + 1
    own = view.manager
    by_manager: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
    together: list[dict[str, Any]] = []
    for r in variant_rows:
        if r["manager"] is None:
            together.append(r)
        else:
            by_manager[r["manager"]].append((r["path"], r["sessions"]))
    # What the page shows: one manager's own figures, or the group's together.
    if own:
        shown_variants = [r for r in variant_rows if r["manager"] == own]
        mates = [(p, n) for m, listed in by_manager.items() if m != own for p, n in listed]
    else:
        shown_variants, mates = together, []
    sessions = sum(r["sessions"] for r in shown_variants)
    counted = [(r["path"], r["sessions"]) for r in shown_variants]
    rework = paths.rework(counted)
    mates_rework = paths.rework(mates) if view.baseline else {}
    step_rows = {(r["manager"], r["step"]): r for r in moves["steps"]}
    who = own or None
    return_ms = {s: r["median_return_ms"] for (m, s), r in step_rows.items() if m is None and r["median_return_ms"]}

    edges_shown = [e for e in moves["edges"] if e["manager"] == who] if own else \
        [e for e in moves["edges"] if e["manager"] is None]
    own_counts = {(e["source"], e["target"]): e["transitions"] for e in edges_shown}
    mates_counts = paths.edge_counts(mates) if view.baseline else {}
    mates_sessions = sum(n for _, n in mates)
    deviating = {(d.source, d.target): d.direction for d in
                 paths.deviations(own_counts, sessions, mates_counts, mates_sessions)} if view.baseline else {}

    order = paths.step_order([s["key"] for s in found.steps],
                             {s for r in shown_variants for s in r["path"]})
    edges = [{"source": e["source"], "target": e["target"], "transitions": e["transitions"],
              "per_session": round(e["transitions"] / sessions, 4) if sessions else None,
              "median_ms": e["median_ms"],
              "teammates_per_session": round(mates_counts.get((e["source"], e["target"]), 0) / mates_sessions, 4)
              if view.baseline and mates_sessions else None,
              "deviation": deviating.get((e["source"], e["target"]))}
             for e in edges_shown]
    # an edge the teammates take and the manager never does is a deviation too ("less")
    edges += [{"source": a, "target": b, "transitions": 0, "per_session": 0.0, "median_ms": None,
               "teammates_per_session": round(mates_counts[(a, b)] / mates_sessions, 4), "deviation": "less"}
              for (a, b), direction in deviating.items() if (a, b) not in own_counts]
    edges.sort(key=lambda e: (-e["transitions"], order.index(e["source"]) if e["source"] in order else 99,
                              e["target"]))
    steps = []
    for key in order:
        r = rework.get(key, paths.StepRework(key, 0, 0))
        mine = step_rows.get((who, key), {})
        steps.append({"step": key, "title": titles.get(key, key), "sessions": r.sessions, "reworked": r.reworked,
                      "rate": round(r.rate, 4), "teammates_rate": round(mates_rework[key].rate, 4)
                      if key in mates_rework else None, "stays": mine.get("stays", 0),
                      "median_ms": mine.get("median_ms"), "median_return_ms": mine.get("median_return_ms")})
    pairs = sorted(paths.ping_pong(counted).items(), key=lambda x: (-x[1], x[0]))
    mates_pairs = paths.ping_pong(mates) if view.baseline else {}
    variants = [{"path": list(r["path"]), "titles": [titles.get(s, s) for s in r["path"]],
                 "sessions": r["sessions"], "share": round(r["sessions"] / sessions, 4) if sessions else 0.0,
                 "median_ms": r["median_ms"], "rework": bool(paths.reworked(r["path"]))}
                for r in sorted(shown_variants, key=lambda r: (-r["sessions"], r["path"]))]
    total, reworked_sessions = _rate(counted)
    data: dict[str, Any] = {
        "sessions": sessions,
        "reworked_sessions": reworked_sessions,
        "rework_rate": round(reworked_sessions / total, 4) if total else None,
        "variants": variants[:VARIANTS_SHOWN],
        "variants_total": len(variants),
        "edges": edges,
        "steps": steps,
        "ping_pong": [{"source": a, "target": b, "sessions": n, "share": round(n / sessions, 4) if sessions else 0.0,
                       "teammates_share": round(mates_pairs.get((a, b), 0) / mates_sessions, 4)
                       if view.baseline and mates_sessions else None}
                      for (a, b), n in pairs[:PING_PONG_SHOWN]],
        "rework_cost": None,
        "managers": [],
    }
    if own and view.baseline:
        cost = paths.rework_cost(rework, mates_rework, return_ms, days)
        mates_total, mates_reworked = _rate(mates)
        data["rework_cost"] = {
            "minutes_per_week": round(cost.minutes_per_week, 1),
            "teammates_rework_rate": round(mates_reworked / mates_total, 4) if mates_total else None,
            "steps": [{"step": c.step, "title": titles.get(c.step, c.step), "rate": round(c.rate, 4),
                       "teammates_rate": round(c.team_rate, 4), "sessions": c.sessions,
                       "median_return_ms": c.return_ms, "minutes_per_week": round(c.minutes_per_week, 1)}
                      for c in cost.steps]}
    if not own:
        data["managers"] = _managers(found, by_manager, return_ms, days)
    return data


def _managers(found: Lookups, by_manager: dict[str, list[tuple[tuple[str, ...], int]]],
              return_ms: dict[str, float], days: int) -> list[dict[str, Any]]:
    """Each manager of a group against the rest of their team in the group: rework rate and minutes a week.

    Each manager's paths are counted once; their teammates' figures are the team's sums less their own
    (counting every teammate's paths again for each manager took a team's page 60 ms)."""
    team_of = found.scope.team_of
    own = {m: (_rate(listed), paths.rework(listed)) for m, listed in by_manager.items()}
    teams: dict[str, list[str]] = defaultdict(list)
    for manager in by_manager:
        teams[team_of.get(manager, "")].append(manager)
    sums: dict[str, tuple[int, int, Counter[str], Counter[str]]] = {}
    for team, members in teams.items():
        visited: Counter[str] = Counter()
        back: Counter[str] = Counter()
        for m in members:
            for r in own[m][1].values():
                visited[r.step] += r.sessions
                back[r.step] += r.reworked
        sums[team] = (sum(own[m][0][0] for m in members), sum(own[m][0][1] for m in members), visited, back)
    rows = []
    for manager in by_manager:
        team = team_of.get(manager, "")
        (total, reworked_), steps = own[manager]
        team_total, team_reworked, visited, back = sums[team]
        mates_total, mates_reworked = team_total - total, team_reworked - reworked_
        cost = None
        if len(teams[team]) > 1:  # the teammates' rework: the team's less the manager's (a step only they took: 0)
            mates = {step: paths.StepRework(step, n - (steps[step].sessions if step in steps else 0),
                                            back[step] - (steps[step].reworked if step in steps else 0))
                     for step, n in visited.items()}
            cost = paths.rework_cost(steps, mates, return_ms, days)
        rows.append({"manager": manager, "manager_name": found.names.get(manager), "team": team, "sessions": total,
                     "rework_rate": round(reworked_ / total, 4) if total else None,
                     "teammates_rework_rate": round(mates_reworked / mates_total, 4) if mates_total else None,
                     "rework_minutes_per_week": None if cost is None else round(cost.minutes_per_week, 1)})
    rows.sort(key=lambda r: (-(r["rework_minutes_per_week"] or 0), r["manager"]))
    return rows


def flow_map(_: Translator, data: dict[str, Any]) -> Any:
    """The SVG of the map (HTML only: the JSON twin carries the edges)."""
    sessions = data["sessions"]
    if not sessions:
        return None
    drawn = [e for e in data["edges"] if e["deviation"] or e["transitions"] >= DRAWN_SHARE * sessions]
    drawn = sorted(drawn, key=lambda e: (not e["deviation"], -e["transitions"]))[:MAX_DRAWN]
    nodes = [flow_svg.Node(s["step"], s["title"], s["stays"], s["median_ms"]) for s in data["steps"]]
    arrows = [flow_svg.Arrow(e["source"], e["target"], e["transitions"], e["median_ms"], e["deviation"])
              for e in drawn]
    label = _.plural("flow.map_label", len(nodes), n=_.num(len(nodes)), edges=_.num(len(drawn)))
    return {"svg": flow_svg.flow_map(_, nodes=nodes, arrows=arrows, label=label),
            "hidden": len(data["edges"]) - len(drawn)}


async def flow_page(request: web.Request, who: Viewer) -> Page:
    """Paths through the steps: the process map, variants, rework and ping-pong, per team or manager."""
    settings = request.app[app_keys.SETTINGS]
    q = request.query
    site, site_names = await chosen_site(request)
    since, until = window_of(q.get("since", ""), q.get("until", ""), datetime.now(UTC).date())
    found = await run(request, lookups, who.user, site)
    view = view_of(found, who.user, q.get("team", ""), q.get("manager", ""), settings.peer_group_min, since, until)
    metric = settings.analysis_metric
    read = await run(request, flow_figures.read, site, since, until, managers=view.read, metric=metric,
                     manager=view.manager or None)
    found_variants, found_stays = await asyncio.gather(run(request, flow_figures.variants, read, view.manager or None),
                                                       run(request, flow_figures.stays, read, view.manager or None))
    found_paths = {"variants": found_variants, **found_stays}
    data = {
        "site": site, "sites": site_names,
        "filters": {"team": q.get("team") or None, "manager": view.manager or None,
                    "since": q.get("since") or None, "until": q.get("until") or None},
        "window": {"since": since, "until": until, "days": (until - since).days + 1},
        "team": view.team or None,
        "team_title": found.team_titles.get(view.team) or view.team or None,
        "manager": view.manager or None,
        "manager_name": found.names.get(view.manager) if view.manager else None,
        "compared_with_teammates": view.baseline,
        "teams": found.team_names if who.user.role in ("admin", "director") else [],
        "manager_options": _manager_options(found, who.user),
        **flow_data(found, view, since, until, found_paths),
    }
    table = q.get("table") if q.get("table") in TABLES else "variants"
    html = not request.path.startswith(API) and q.get("format") != "csv"  # the map is drawn for a person only
    return Page("flow.html", data, title="flow.title", table=table, columns=TABLES[table],
                context={"map": flow_map(Translator(who.user.language), data) if html else None,
                         "team_titles": found.team_titles,
                         "titles": {s["step"]: s["title"] for s in data["steps"]}})


def _manager_options(found: Lookups, user: User) -> list[dict[str, Any]]:
    if user.role == "manager":
        return []
    visible = [m for m in found.scope.team_of if found.scope.sees_manager(m)]
    return [{"manager": m, "name": found.names.get(m), "team": found.scope.team_of.get(m, "")}
            for m in sorted(visible, key=lambda m: (found.names.get(m) or m).casefold())]


def register(app: web.Application) -> None:
    add_page(app, "/flow", flow_page, roles=ROLES, name="flow", query=(
        SITE, text("team", "a team's sessions (default: every team the account may see)"),
        text("manager", "one manager's sessions, compared with their teammates"),
        day("since", f"first day (default: {DEFAULT_DAYS} days ending on until)"),
        day("until", "last day (default: today)"),
        choice("table", tuple(TABLES), "which table ?format=csv exports")),
             response=answer(site="string", sites="array", filters="object", window="object", team="string?",
                             team_title="string?",
                             manager="string?", manager_name="string?", compared_with_teammates="boolean",
                             teams="array", manager_options="array", sessions="integer",
                             reworked_sessions="integer", rework_rate="number?", variants="array",
                             variants_total="integer", edges="array", steps="array", ping_pong="array",
                             rework_cost="object?", managers="array"))
