"""Manager page: one manager's step times against the bands, over the weeks, and their flags.

    GET /managers/{manager}?site=&since=&until=      (JSON twin: /api/v1/managers/{manager})

Per step: a bullet chart of the median against min, reference and max; the distribution of the
window's sessions on a log time scale; weekly medians with the band in force each week; visits
tracked by the tracker vs imported from an event log. Then the manager's flags and their history.

Who: an admin; a director for the managers of the teams they lead; a trainer for the managers
assigned to them; a manager for themselves only (access.scope_of). Anyone else gets 403 with the
reason. `manager_data` is also what "My figures" (/me) shows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from clickhouse_connect.driver.client import Client

from analysis.bands import Band, BandVersion, band_in_force
from dashboards import access, charts, figures
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.pages import coaching as coaching_pages
from dashboards.pages.drawdowns import flag_reason_codes, flag_reasons, history_shown
from dashboards.web import SITE, Page, add_page, answer, choice, chosen_site, day, day_param, run, text
from kernel import app_keys, band_versions, flag_store, managers, notes, processes
from kernel.errors import InvalidInput, NotFound
from kernel.settings import Settings
from kernel.users import User

TREND_WEEKS = 12
MAX_DAYS = 366
ACTIVE_FLAG = ("open", "acknowledged", "coaching")
STEP_COLUMNS = ["step", "title", "n", "p10_ms", "p25_ms", "median_ms", "p75_ms", "p90_ms", "band_min_ms",
                "band_reference_ms", "band_max_ms", "band_team", "position", "share_above_max", "share_below_min",
                "status", "analysis_median_ms", "like_for_like", "minutes_lost_per_week",
                "minutes_above_reference_per_week", "start_date", "start_at_least", "visits_tracked", "visits_imported"]
FLAG_COLUMNS = ["flag_id", "kind", "step", "team", "status", "opened_at", "updated_at", "resolved_at", "n",
                "median_ms", "min_ms", "reference_ms", "max_ms", "minutes_lost_per_week", "start_date",
                "start_at_least", "periods_in_drawdown", "q_value", "managers"]


def csv_table(query: Mapping[str, str]) -> tuple[str, list[str]]:
    """Which table ?format=csv exports: the steps (default) or, with &table=flags, the flags."""
    return ("flags", FLAG_COLUMNS) if query.get("table") == "flags" else ("steps", STEP_COLUMNS)


@dataclass(frozen=True)
class Period:
    """The window whose sessions are summarised (both days included), and where the weekly trend starts."""

    since: date
    until: date
    trend_since: date  # a Monday, TREND_WEEKS weeks back from the week of `until`

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "trend_since": self.trend_since}


def period_of(query: Mapping[str, str], settings: Settings, today: date | None = None) -> Period:
    """`?since=&until=` (dates), by default the analysis window ending today."""
    today = today or datetime.now(UTC).date()
    until = day_param(query.get("until", ""), "until") or today
    since = day_param(query.get("since", ""), "since") or until - timedelta(days=settings.analysis_window_days - 1)
    if since > until:
        raise InvalidInput("since must be on or before until", field="since", code="since_after_until")
    if (until - since).days >= MAX_DAYS:
        raise InvalidInput(f"a window is at most {MAX_DAYS} days", field="since", code="window_too_long",
                           values={"n": str(MAX_DAYS)})
    monday = until - timedelta(days=until.weekday())
    return Period(since, until, monday - timedelta(weeks=TREND_WEEKS - 1))


def band_versions_by_step(client: Client, site: str, step: str | None = None) -> dict[str, list[BandVersion]]:
    by_step: dict[str, list[BandVersion]] = defaultdict(list)
    for v in band_versions.versions(client, site, step):
        by_step[v.step].append(BandVersion(v.effective_from, v.team or None, Band(v.min_ms, v.reference_ms, v.max_ms)))
    return by_step


def band_dict(version: BandVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    b = version.band
    return {"min_ms": b.min_ms, "reference_ms": b.reference_ms, "max_ms": b.max_ms, "team": version.team or "",
            "effective_from": version.effective_from}


def limits_of(band: dict[str, Any] | None) -> charts.Limits | None:
    return None if band is None else charts.Limits(band["min_ms"], band["reference_ms"], band["max_ms"])


def manager_data(client: Client, settings: Settings, user: User, site: str, manager: str,
                 period: Period, *, unknown_is_404: bool = True) -> dict[str, Any]:
    """Everything the manager page (and /me) shows, if `user` may see `manager`; Forbidden otherwise.

    A manager id with no sessions, no team and no analysis is NotFound (a typo), unless
    `unknown_is_404` is off: a new manager's own page is simply empty."""
    scope = access.scope_of(client, user, site)
    scope.require_manager(manager)
    team = scope.team_of.get(manager, "")
    process = processes.latest(client, site)
    versions = band_versions_by_step(client, site)
    bands = {step: band_dict(band_in_force(v, period.until, team or None)) for step, v in versions.items()}
    found = figures.distributions(
        client, site, key="step", manager=manager, since=period.since, until=period.until,
        trend_since=period.trend_since, metric=settings.analysis_metric,
        limits={s: (b["min_ms"], b["max_ms"]) for s, b in bands.items() if b})
    sources = figures.visit_sources(client, site, period.since, period.until, manager=manager)
    latest = figures.latest_stats(client, site, manager=manager)
    verdicts = {r["step"]: r for r in latest.rows}
    titles = {s.key: s.title for s in process.steps} if process else {}
    order = list(titles) + sorted(set(found.by_key) - set(titles))
    if unknown_is_404 and not found.by_key and not sources and manager not in scope.team_of and not verdicts:
        raise NotFound(f"no sessions of manager {manager!r} on site {site} from {period.trend_since} to {period.until}",
                       code="no_sessions",
                       values={"since": period.trend_since.isoformat(), "until": period.until.isoformat()})
    weeks = [period.trend_since + timedelta(weeks=i) for i in range(TREND_WEEKS)]
    steps = []
    for step in order:
        dist = found.by_key.get(step, figures.Distribution(0))
        band, verdict = bands.get(step), verdicts.get(step, {})
        visits = {"tracked": 0, "imported": 0, **sources.get((manager, step), {})}
        by_week = {w.week: w for w in found.weeks_by_key.get(step, [])}
        steps.append({
            "step": step, "title": titles.get(step, step),
            **stats_fields(dist, band, verdict, settings.analysis_material),
            "visits_tracked": visits["tracked"], "visits_imported": visits["imported"],
            "histogram": [{"from_ms": round(b.from_ms, 1), "to_ms": round(b.to_ms, 1), "sessions": b.sessions}
                          for b in found.bins_by_key.get(step, [])],
            "weekly": [{"week": w, "sessions": by_week[w].sessions if w in by_week else 0,
                        "median_ms": by_week[w].median_ms if w in by_week else None,
                        "band": band_dict(band_in_force(versions.get(step, []), min(w + timedelta(days=6),
                                                                                      period.until), team or None))}
                       for w in weeks],
        })
    flags = figures.flags_of(client, site, manager)
    _ = Translator(user.language)
    histories = {flag_id: history_shown(_, changes)
                 for flag_id, changes in figures.flag_histories(client, site, [f.flag_id for f in flags]).items()}
    names = managers.names(client, site)
    return {
        "site": site, "manager": manager, "manager_name": names.get(manager), "team": team, "period": period.as_dict(),
        "metric": settings.analysis_metric,
        "analysis": {"run_at": latest.run_at, "since": latest.window_start, "until": latest.window_end}
        if latest.run_at else None,
        "steps": steps,
        "flags": [{**_flag(f, scope, histories.get(f.flag_id, []), names), "step_title": titles.get(f.step, f.step),
                   # the reasons and each change's why in the account's language (`reasons` keeps the stored text)
                   "reason_codes": flag_reason_codes(f), "reasons_said": flag_reasons(_, f)}
                  for f in flags],
        # the manager's own notes on weeks of their steps and on their flags (kernel/notes.py)
        "notes": [n.as_dict() for n in notes.notes_of(client, site, [manager])],
    }


def stats_fields(dist: figures.Distribution, band: dict[str, Any] | None, verdict: Mapping[str, Any],
                 material: float) -> dict[str, Any]:
    """One row's figures against its band, as the manager page (per step) and the step page (per manager)
    show them: sessions, percentiles, the band in force, where the median falls, shares outside; then the
    latest analysis' verdict on the pair with its time lost (docs/analysis.md), its minutes above the
    reference, its rank among its teammates, since when, and the flag covering it."""
    return {**_figures(dist, band), **verdict_fields(verdict, material)}


def verdict_fields(verdict: Mapping[str, Any], material: float) -> dict[str, Any]:
    """The latest analysis' verdict on one pair (a row of `stepwatch stats --json`), as pages show it.

    `inside_band`: the analysed median is within the band, so a slow verdict comes from the peer rule
    and is said as "inside the band, slower than k of n teammates". `above_reference_material`: the
    median is at least `material` (the analysis' materiality threshold) above the reference: a pair on
    track that far above it says so in words; nearer, the difference is immaterial and left unsaid
    (the minutes are in the JSON twin and the CSV either way)."""
    band, median = verdict.get("band"), verdict.get("median_ms")
    return {
        "above_reference_material": bool(band and median is not None
                                         and median >= (1 + material) * band["reference_ms"]),
        "status": verdict.get("status"),
        "minutes_lost_per_week": verdict.get("minutes_lost_per_week"),
        "minutes_above_reference_per_week": verdict.get("minutes_above_reference_per_week"),
        "peers": verdict.get("peers"),
        "inside_band": None if not band or median is None else band["min_ms"] <= median <= band["max_ms"],
        # The median the analysis judged (that the flags, /overview and /drawdowns show): of its own window,
        # and, where the site declares kinds of client, adjusted to the team's mix (docs/analysis.md, like
        # for like). The page's `median_ms` is the window's sessions as measured; the two can differ.
        "analysis_median_ms": median,
        "like_for_like": bool(verdict.get("case_mix")),
        "start_date": _day(verdict.get("start_date")),
        "start_at_least": verdict.get("start_at_least"),
        "flag_id": verdict.get("flag_id"),
        "flag_kind": verdict.get("flag_kind"),
    }


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _figures(dist: figures.Distribution, band: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "n": dist.n, "p10_ms": dist.p10_ms, "p25_ms": dist.p25_ms, "median_ms": dist.median_ms,
        "p75_ms": dist.p75_ms, "p90_ms": dist.p90_ms,
        "band_min_ms": band and band["min_ms"], "band_reference_ms": band and band["reference_ms"],
        "band_max_ms": band and band["max_ms"], "band_team": band and band["team"],
        "position": charts.position(dist.median_ms, limits_of(band)),
        "share_above_max": _share(dist.above_max, dist.n), "share_below_min": _share(dist.below_min, dist.n),
    }


def _share(count: int | None, n: int) -> float | None:
    return None if count is None or not n else round(count / n, 4)


def _flag(f: flag_store.StoredFlag, scope: access.Scope, history: list[dict[str, Any]],
          names: dict[str, str]) -> dict[str, Any]:
    # A systemic flag's figures are the whole team's sessions and it names the team's slow managers:
    # an account that may not see all of them (a manager) gets the flag without those.
    whole_team = all(scope.sees_manager(m) for m in f.managers)
    return {
        "flag_id": f.flag_id, "kind": f.kind, "step": f.step, "team": f.team, "status": f.status,
        "active": f.status in ACTIVE_FLAG, "opened_at": f.opened_at, "updated_at": f.updated_at,
        "resolved_at": f.resolved_at, "window_start": f.window_start, "window_end": f.window_end,
        "n": f.n if whole_team else None, "median_ms": f.median_ms if whole_team else None,
        "min_ms": f.min_ms, "reference_ms": f.reference_ms, "max_ms": f.max_ms,
        "q_value": f.q_value, "start_date": f.start_date, "start_at_least": f.start_at_least,
        "periods_in_drawdown": f.periods_in_drawdown,
        "minutes_lost_per_week": f.minutes_lost_per_week if whole_team else None, "reasons": list(f.reasons),
        "managers": [m for m in f.managers if scope.sees_manager(m)],
        "manager_names": [names.get(m) for m in f.managers if scope.sees_manager(m)],
        "history": history,
    }


def step_charts(_: Translator, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three SVG charts of every step (HTML only: the JSON twin carries the numbers)."""
    drawn = {}
    for s in data["steps"]:
        if not s["n"] and not any(w["sessions"] for w in s["weekly"]):
            continue  # no sessions in the window or the trend: the page says so in words
        band = limits_of(s["band_min_ms"] and {"min_ms": s["band_min_ms"], "reference_ms": s["band_reference_ms"],
                                               "max_ms": s["band_max_ms"]})
        label = s["title"]
        drawn[s["step"]] = {
            "bullet": charts.bullet(_, label=label, median_ms=s["median_ms"], band=band),
            "histogram": charts.histogram(_, label=label, bins=[(b["from_ms"], b["to_ms"], b["sessions"])
                                                                for b in s["histogram"]],
                                          band=band, median_ms=s["median_ms"]),
            "weekly": charts.weekly(_, label=label,
                                    weeks=[(w["week"], w["sessions"], w["median_ms"]) for w in s["weekly"]],
                                    bands=[limits_of(w["band"]) for w in s["weekly"]]),
        }
    return drawn


def segment(value: str) -> str:
    """A value as one URL path segment (a manager id may hold '/', '?' or '<')."""
    return quote(value, safe="")


async def manager_page(request: web.Request, who: Viewer) -> Page:
    """One manager's step times against the bands, by week, and their flags (whom the account may see)."""
    manager = request.match_info["manager"]
    site, names = await chosen_site(request)
    settings = request.app[app_keys.SETTINGS]
    period = period_of(request.query, settings)
    data, coaching = await asyncio.gather(run(request, manager_data, settings, who.user, site, manager, period),
                                          run(request, coaching_pages.history, settings, who.user, site, manager))
    data["sites"], data["coaching"] = names, coaching
    _ = Translator(who.user.language)
    table, columns = csv_table(request.query)
    return Page("manager.html", data, title="manager.title", table=table, columns=columns,
                context={"charts": step_charts(_, data), "segment": segment, "own": False,
                         "coaching_charts": coaching_pages.history_charts(_, data["coaching"]),
                         "heading": data["manager_name"] or _("manager.heading", manager=manager)})


# What the manager page and My figures accept besides the site.
PERIOD = (day("since", "first day of the window (default: the analysis window ending today)"),
          day("until", "last day of the window (default: today)"))
TABLE = choice("table", ("steps", "flags"), "which table ?format=csv exports")
FIGURES = answer(site="string", manager="string", team="string", period="object", metric="string",
                 analysis="object?", steps="array", flags="array", notes="array", sites="array",
                 coaching="array")


def register(app: web.Application) -> None:
    add_page(app, "/managers/{manager}", manager_page, roles=("admin", "director", "trainer", "manager"),
             name="manager", path_params=(text("manager", "the manager's id", required=True),),
             query=(SITE, *PERIOD, TABLE), response=FIGURES)
