"""Step pages: the steps of a site, and one step's managers against its band, with the band editor.

    GET  /steps?site=                              (JSON twin: /api/v1/steps)
    GET  /steps/{step}?site=&since=&until=         (JSON twin: /api/v1/steps/{step})
    POST /steps/{step}/bands                       (JSON API: /api/v1/steps/{step}/bands)

The list counts, per step, the managers whose median in the latest analysis is outside the band.
A step's page shows every visible manager's distribution (P10, quartiles, median, P90) against
the band in force for their team, the distribution of all their sessions on a log scale, the
band's history, and on request (?suggest=1) a suggested band (P10 / median / P90 of the last 30
days, every manager weighted equally).

Who sees: admin, director (the managers of the teams they lead), trainer (the managers assigned
to them). A manager account gets 403: these pages compare managers with each other.
Who changes bands: an admin any band (the default of every team, or a team's override); a
director only the overrides of the teams they lead. Every change needs a reason and is audited
(band_versions.add_version writes the audit entry: who, when, why, before and after).

A site whose process declares session attributes may also have bands for one kind of client
(`stratum` "segment=vip"): listed under the bands in force, set with the same editor by choosing
the kind, and read by the analysis as how long that kind should take (docs/analysis.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np
from aiohttp import web
from clickhouse_connect.driver.client import Client

from analysis.bands import BOOTSTRAP_RESAMPLES, MIN_SESSIONS_TO_SUGGEST, Band, BandError, BandVersion, band_in_force
from dashboards import access, charts, figures
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.pages.manager import (
    Period,
    band_dict,
    band_versions_by_step,
    limits_of,
    period_of,
    segment,
    stats_fields,
)
from dashboards.web import (
    DONE,
    SITE,
    Page,
    add_action,
    add_page,
    answer,
    choice,
    chosen_site,
    day,
    flag,
    run,
    text,
    whole,
)
from kernel import app_keys, band_versions, durations, processes, sites, teams
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.managers import names as manager_names
from kernel.settings import Settings
from kernel.storage import METRIC_COLUMNS, older_refreshes_left_out
from kernel.users import User

VIEW_ROLES = ("admin", "director", "trainer")
EDIT_ROLES = ("admin", "director")
SUGGEST_DAYS = 30  # as `stepwatch bands suggest` by default
MAX_REASON = 500
LIST_COLUMNS = ["step", "title", "band_min_ms", "band_reference_ms", "band_max_ms", "overrides", "managers",
                "enough", "above", "below", "outside", "flagged"]
MANAGER_COLUMNS = ["manager", "team", "n", "p10_ms", "p25_ms", "median_ms", "p75_ms", "p90_ms", "band_min_ms",
                   "band_reference_ms", "band_max_ms", "band_team", "position", "share_above_max", "share_below_min",
                   "status", "minutes_lost_per_week", "minutes_above_reference_per_week", "start_date",
                   "start_at_least", "flag_id", "visits_imported"]
HISTORY_COLUMNS = ["effective_from", "team", "stratum", "min_ms", "reference_ms", "max_ms", "set_at", "set_by",
                   "reason"]


# --- the list of steps -----------------------------------------------------------------------------------------


def steps_data(client: Client, settings: Settings, user: User, site: str) -> dict[str, Any]:
    scope = access.scope_of(client, user, site)
    process = processes.latest(client, site)
    versions = band_versions_by_step(client, site)
    today = datetime.now(UTC).date()
    run, counts = figures.steps_outside(client, site, managers=scope.managers,
                                        min_sessions=settings.analysis_min_sessions)
    titles = {s.key: s.title for s in process.steps} if process else {}
    rows = []
    for step in list(titles) + sorted(set(counts) - set(titles)):
        default = band_dict(band_in_force(versions.get(step, []), today, None))
        overrides = {v.team for v in versions.get(step, []) if v.team and v.effective_from <= today}
        c = counts.get(step, {"managers": 0, "enough": 0, "above": 0, "below": 0, "flagged": 0})
        rows.append({"step": step, "title": titles.get(step, step),
                     "band_min_ms": default and default["min_ms"], "band_reference_ms": default and
                     default["reference_ms"], "band_max_ms": default and default["max_ms"],
                     "overrides": len(overrides), **c, "outside": c["above"] + c["below"]})
    return {"site": site, "min_sessions": settings.analysis_min_sessions,
            "analysis": {"run_at": run.run_at, "since": run.window_start, "until": run.window_end}
            if run.run_at else None, "steps": rows}


async def steps_page(request: web.Request, who: Viewer) -> Page:
    """The steps of a site with how many managers are outside each band (admin, director, trainer)."""
    site, names = await chosen_site(request)
    data = await run(request, steps_data, request.app[app_keys.SETTINGS], who.user, site)
    data["sites"] = names
    return Page("steps.html", data, title="step.list_title", table="steps", columns=LIST_COLUMNS,
                context={"segment": segment})


# --- one step --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A band typed into the editor but not saved: what the preview compares with the bands in force."""

    band: Band
    team: str  # "" is the band of every team
    effective_from: date
    stratum: str = ""  # "" is the band of every kind of client; else "segment=vip"


def step_data(client: Client, settings: Settings, user: User, site: str, step: str, period: Period, *,
              suggest: bool = False, proposal: Proposal | None = None) -> dict[str, Any]:
    """Everything the step page shows; the suggested band only when asked for (`suggest`): it sorts
    a month of the step's sessions, which costs as much as the rest of the page. With a `proposal`,
    the preview: how many medians of the latest analysis it puts outside, against the bands in force."""
    scope = access.scope_of(client, user, site)
    process = processes.latest(client, site)
    stored = band_versions.versions(client, site, step, stratum=None)  # every kind's bands and each kind's
    versions = [BandVersion(v.effective_from, v.team or None, Band(v.min_ms, v.reference_ms, v.max_ms))
                for v in stored if not v.stratum]
    titles = {s.key: s.title for s in process.steps} if process else {}
    if step not in titles and not stored:
        raise NotFound(f"site {site} has no step {step!r}", field="step", code="no_step", values={"step": step})
    site_teams = teams.list_teams(client, site)
    by_team = {t: band_dict(band_in_force(versions, period.until, t)) for t in site_teams}
    default = band_dict(band_in_force(versions, period.until, None))
    visible = scope.managers
    team_band = {m: by_team.get(t) or default for m, t in scope.team_of.items()}

    def band_of(manager: str) -> dict[str, Any] | None:
        return team_band.get(manager, default)

    latest = figures.latest_stats(client, site, step=step, managers=visible)
    verdicts = {r["manager"]: r for r in latest.rows}
    limits = {m: (b["min_ms"], b["max_ms"]) for m, b in team_band.items() if b}
    found = figures.distributions(client, site, key="manager", step=step, managers=visible, since=period.since,
                                  until=period.until, metric=settings.analysis_metric, limits=limits,
                                  default_limits=default and (default["min_ms"], default["max_ms"]), detail=False)
    imported = figures.visit_sources(client, site, period.since, period.until, step=step, managers=visible,
                                     tracked=False)
    names = manager_names(client, site)
    managers = []
    by_name = sorted(set(found.by_key) | set(verdicts), key=lambda m: (m not in names, names.get(m, m).casefold(), m))
    for manager in by_name:
        dist = found.by_key.get(manager, figures.Distribution(0))
        band, verdict = band_of(manager), verdicts.get(manager, {})
        managers.append({
            "manager": manager, "manager_name": names.get(manager), "team": scope.team_of.get(manager, ""),
            **stats_fields(dist, band, verdict, settings.analysis_material),
            "visits_imported": imported.get((manager, step), {}).get("imported", 0),
        })
    editable = editable_teams(user, site_teams)
    suggestion = None
    if editable and suggest:
        since = period.until - timedelta(days=SUGGEST_DAYS - 1)
        found_suggestion = figures.suggested_band(client, site, step, since, period.until,
                                                  metric=settings.analysis_metric, managers=visible,
                                                  min_sessions=MIN_SESSIONS_TO_SUGGEST)
        interval = found_suggestion and reference_interval(
            client, site, step, since, period.until, metric=settings.analysis_metric, managers=visible,
            reference_ms=found_suggestion.reference_ms)
        suggestion = found_suggestion and {
            "min_ms": found_suggestion.min_ms, "reference_ms": found_suggestion.reference_ms,
            "max_ms": found_suggestion.max_ms, "n": found_suggestion.n, "managers": found_suggestion.managers,
            "since": found_suggestion.since, "until": found_suggestion.until,
            "reference_low_ms": interval and interval[0], "reference_high_ms": interval and interval[1]}
    if proposal and editable and proposal.team not in editable:  # a hand-made link: what saving would say
        _ = Translator(user.language)
        if proposal.team and proposal.team not in site_teams:
            raise InvalidInput(_("step.error_team", team=proposal.team, site=site), field="team")
        raise Forbidden(_("step.error_director", teams=", ".join(user.teams) or "–"))
    if proposal and editable and proposal.stratum:
        proposal = replace(proposal, stratum=checked_kind(process, proposal.stratum, Translator(user.language)))
        preview = kind_preview(versions, proposal, band_versions.kind_title(process, proposal.stratum))
    else:
        preview = proposal and editable and band_preview(
            latest.rows, scope.team_of, versions, proposal, min_sessions=settings.analysis_min_sessions,
            window=(latest.window_start, latest.window_end))
    return {
        "site": site, "step": step, "title": titles.get(step, step), "period": period.as_dict(),
        "metric": settings.analysis_metric,
        "analysis": {"run_at": latest.run_at, "since": latest.window_start, "until": latest.window_end}
        if latest.run_at else None,
        "band": default,
        "team_bands": [{"team": t, **b} for t, b in by_team.items() if b and b["team"]],
        "kinds": kinds_of(process),
        "kind_bands": kind_bands(process, stored, site_teams, period.until),
        "history": [{"team": v.team, "stratum": v.stratum, "kind_title": band_versions.kind_title(process, v.stratum),
                     "min_ms": v.min_ms, "reference_ms": v.reference_ms, "max_ms": v.max_ms,
                     "effective_from": v.effective_from, "set_at": v.set_at, "set_by": v.set_by, "reason": v.reason}
                    for v in reversed(stored)],
        "managers": managers,
        "histogram": [{"from_ms": round(b.from_ms, 1), "to_ms": round(b.to_ms, 1), "sessions": b.sessions}
                      for b in found.bins],
        "visits_imported": sum(m["visits_imported"] for m in managers),
        "suggested": bool(editable and suggest),
        "suggestion": suggestion,
        "editable_teams": editable,
        "preview": preview or None,
    }


def kinds_of(process: processes.Process | None) -> list[dict[str, str]]:
    """The kinds of client a band may be set for: each value of each declared session attribute, titled."""
    if process is None:
        return []
    return [{"stratum": f"{name}={value}", "attribute": name, "value": value,
             "title": band_versions.kind_title(process, f"{name}={value}")}
            for name, values in process.attributes.items() for value in values]


def kind_bands(process: processes.Process | None, stored: Sequence[band_versions.StoredBand],
               site_teams: Mapping[str, str], on: date) -> list[dict[str, Any]]:
    """The bands of one kind of client in force on `on`: per kind, the one for every team and each team's
    own, in the process's order of kinds (a kind no longer declared last, as stored)."""
    by_kind: dict[str, list[BandVersion]] = {}
    for v in stored:
        if v.stratum:
            by_kind.setdefault(v.stratum, []).append(
                BandVersion(v.effective_from, v.team or None, Band(v.min_ms, v.reference_ms, v.max_ms)))
    order = [k["stratum"] for k in kinds_of(process)]
    found = []
    for stratum in sorted(by_kind, key=lambda k: (order.index(k) if k in order else len(order), k)):
        versions = by_kind[stratum]
        for team in ("", *site_teams):
            band = band_dict(band_in_force(versions, on, team or None))
            if band and band["team"] == team:  # a team listed only for a band of its own
                found.append({"stratum": stratum, "kind_title": band_versions.kind_title(process, stratum),
                              "declared": stratum in order, **band})
    return found


def kind_preview(versions: Sequence[BandVersion], proposal: Proposal, kind: str) -> dict[str, Any]:
    """A band for one kind of client, not saved: how much longer it says that kind takes than the band for
    every kind in force for the same team on its date (the factor the analysis divides that kind's sessions
    by). The medians of the latest analysis cannot be recounted without it: that shows after the next run."""
    every = band_in_force(versions, proposal.effective_from, proposal.team or None)
    return {"min_ms": proposal.band.min_ms, "reference_ms": proposal.band.reference_ms,
            "max_ms": proposal.band.max_ms, "team": proposal.team, "effective_from": proposal.effective_from,
            "stratum": proposal.stratum, "kind_title": kind,
            "every_kind_reference_ms": every and every.band.reference_ms,
            "factor": every and round(proposal.band.reference_ms / every.band.reference_ms, 3)}


def band_preview(rows: Sequence[Mapping[str, Any]], team_of: Mapping[str, str], versions: Sequence[BandVersion],
                 proposal: Proposal, *, min_sessions: int, window: tuple[date | None, date | None]) -> dict[str, Any]:
    """How many medians of the latest analysis (its stored rows: no session is read) are above the max
    and below the min with the bands in force on the proposal's date, and with the proposal saved.

    The proposal is added as one more version and band_in_force picks each manager's band, so a default
    leaves the teams with their own override alone, exactly as the analysis will."""
    effective, team = proposal.effective_from, proposal.team or None
    added = BandVersion(effective, team, proposal.band)
    proposed = [*versions, added]
    counts = {"judged": 0, "affected": 0, "above_now": 0, "below_now": 0, "above_new": 0, "below_new": 0}
    for row in rows:
        median = row.get("median_ms")
        if median is None or int(row.get("n") or 0) < min_sessions:
            continue
        manager_team = team_of.get(row["manager"], row.get("team") or "") or None
        now, new = band_in_force(versions, effective, manager_team), band_in_force(proposed, effective, manager_team)
        counts["judged"] += 1
        counts["affected"] += new is added
        for when, version in (("now", now), ("new", new)):
            if version is not None:
                counts[f"above_{when}"] += median > version.band.max_ms
                counts[f"below_{when}"] += median < version.band.min_ms
    keep = sorted({v.team for v in versions if v.team and v.effective_from <= effective}) if not team else []
    return {"min_ms": proposal.band.min_ms, "reference_ms": proposal.band.reference_ms,
            "max_ms": proposal.band.max_ms, "team": proposal.team, "effective_from": effective, "stratum": "",
            "teams_keeping_their_band": keep, "min_sessions": min_sessions,
            "analysis_since": window[0], "analysis_until": window[1], **counts}


#: The interval's resolution: session times in bins of 2^(1/32), 2.2% wide, so a manager's sessions
#: travel as at most a few hundred counts, not one number per session.
INTERVAL_BINS_PER_DOUBLING = 32


def reference_interval(client: Client, site: str, step: str, since: date, until: date, *, metric: str,
                       managers: Collection[str] | None, reference_ms: int) -> tuple[int, int] | None:
    """The 95% interval of the suggested reference as `stepwatch bands suggest` computes it (whole managers
    resampled 400 times with seed 0, analysis.bands._balanced_reference_ci), from each manager's sessions
    counted in fine log-time bins inside ClickHouse instead of every session: a resample's weighted CDF is
    then a sum of managers' CDFs, so 400 resamples are one matrix product. Within a bin's width (2.2%) of
    the CLI's; None with fewer than two managers, as the CLI."""
    if managers is not None and not managers:
        return None
    where, parameters = figures._filters(site, since, until, None, step, managers)
    newest_only, newest = older_refreshes_left_out(client, site, since, until)
    rows = client.query(  # pair_days, as the step's other figures: a few thousand arrays, not every session
        f"""
        SELECT m, groupArray(b), groupArray(c) FROM (
            SELECT manager AS m, toInt32(floor(log2(t) * {INTERVAL_BINS_PER_DOUBLING})) AS b, count() AS c
            FROM pair_days ARRAY JOIN {METRIC_COLUMNS[metric]} AS t
            WHERE {where} {newest_only} AND t > 0 GROUP BY m, b)
        GROUP BY m
        """,
        parameters={**parameters, **newest},
    ).result_rows
    if len(rows) < 2:
        return None
    rows.sort(key=lambda r: r[0])  # the CLI numbers managers in sorted order (np.unique)
    first = min(min(r[1]) for r in rows)
    width = max(max(r[1]) for r in rows) - first + 1
    shares = np.zeros((len(rows), width))
    for i, (_, bins, counts) in enumerate(rows):
        found = np.asarray(counts, dtype=float)
        shares[i, np.asarray(bins) - first] = found / found.sum()
    cdfs = np.cumsum(shares, axis=1)
    n_managers = len(rows)
    rng = np.random.default_rng(0)  # the CLI's draws, in the CLI's order
    picks = np.stack([np.bincount(rng.integers(0, n_managers, size=n_managers), minlength=n_managers)
                      for _ in range(BOOTSTRAP_RESAMPLES)])
    mixed = picks @ cdfs / n_managers
    medians = 2 ** ((np.argmax(mixed >= 0.5 - 1e-9, axis=1) + first + 0.5) / INTERVAL_BINS_PER_DOUBLING)
    low, high = np.quantile(medians, [0.025, 0.975])
    return min(round(float(low)), reference_ms), max(round(float(high)), reference_ms)


def editable_teams(user: User, site_teams: dict[str, str]) -> list[str]:
    """Which bands this account may set: "" is the default of every team (an admin's), else a team."""
    if user.role == "admin":
        return ["", *site_teams]
    if user.role == "director":
        return [t for t in user.teams if t in site_teams]
    return []


def step_charts(_: Translator, data: dict[str, Any]) -> dict[str, Any]:
    band = limits_of(data["band"])
    groups: dict[str, list[charts.BoxRow]] = {}
    for m in data["managers"]:
        if not m["n"]:
            continue
        row_band = limits_of(m["band_min_ms"] and {"min_ms": m["band_min_ms"], "reference_ms": m["band_reference_ms"],
                                                   "max_ms": m["band_max_ms"]})
        groups.setdefault(m["team"], []).append(charts.BoxRow(m["manager_name"] or m["manager"], m["n"], m["p10_ms"],
                                                              m["p25_ms"], m["median_ms"], m["p75_ms"], m["p90_ms"],
                                                              row_band))
    domain = charts.box_domain(row for rows in groups.values() for row in rows)  # one axis for every team
    return {
        "histogram": charts.histogram(_, label=data["title"], bins=[(b["from_ms"], b["to_ms"], b["sessions"])
                                                                    for b in data["histogram"]], band=band),
        "teams": [(team, charts.boxes(_, label=f"{data['title']} · {team or _('step.no_team')}", rows=rows,
                                      domain=domain))
                  for team, rows in sorted(groups.items())],
    }


async def step_page(request: web.Request, who: Viewer) -> Page:
    """One step: every visible manager against the band, the band's history and (?suggest=1) a suggestion."""
    step = request.match_info["step"]
    site, names = await chosen_site(request)
    settings = request.app[app_keys.SETTINGS]
    period = period_of(request.query, settings)
    _ = Translator(who.user.language)
    data = await run(request, step_data, settings, who.user, site, step, period,
                     suggest=request.query.get("suggest") == "1", proposal=proposal_of(request.query, _))
    data["sites"] = names
    history = request.query.get("table") == "history"  # ?format=csv&table=history: the band's versions
    return Page("step.html", data, title="step.title", table="history" if history else "managers",
                columns=HISTORY_COLUMNS if history else MANAGER_COLUMNS,
                context={"charts": step_charts(_, data), "segment": segment, "today": datetime.now(UTC).date(),
                         "duration_text": duration_text, "editor": editor_values(data, request.query)})


def proposal_of(query: Mapping[str, str], _: Translator) -> Proposal | None:
    """The band in ?min=&reference=&max= (the Preview button's redirect, or the suggestion's "copy into the
    editor" link), or None; a value that does not read is a 400 naming its field, as on saving."""
    if not any(query.get(name) for name in ("min", "reference", "max")):
        return None
    effective = query.get("effective_from")
    return Proposal(band_of_fields({n: query.get(n) for n in ("min", "reference", "max")}, _),
                    str(query.get("team") or "").strip(),
                    date.fromisoformat(effective) if effective else datetime.now(UTC).date(),
                    str(query.get("stratum") or "").strip())


def editor_values(data: dict[str, Any], query: Mapping[str, str]) -> dict[str, str]:
    """What the editor's fields hold: the previewed band as typed, else the band in force, as "4m30s" text
    rounded as a person types a band (a suggested band's milliseconds are not worth editing: whole
    seconds from 10 s, tenths below); the team "" (every team) unless one was chosen: a team override
    is never the silent default."""
    band = data["band"] or {}
    found = {name: query.get(name) or duration_text(_as_typed(band.get(f"{name}_ms")))
             for name in ("min", "reference", "max")}
    team = str(query.get("team") or "")
    found["team"] = team if team in data["editable_teams"] else (data["editable_teams"] or [""])[0]
    stratum = str(query.get("stratum") or "")
    found["stratum"] = stratum if stratum in {k["stratum"] for k in data["kinds"]} else ""  # every kind unless chosen
    found["effective_from"] = query.get("effective_from") or ""
    found["reason"] = query.get("reason") or ""
    return found


def _as_typed(ms: int | float | None) -> int | float | None:
    """A band limit rounded as a person would type it: whole seconds from 10 s, tenths of one below."""
    if ms is None:
        return None
    return round(ms / 1000) * 1000 if ms >= 10_000 else round(ms / 100) * 100


# --- the band editor -------------------------------------------------------------------------------------------

FIELD_LABELS = {"min": "step.min", "reference": "step.reference", "max": "step.max"}


def parse_duration(value: Any, name: str, _: Translator | None = None) -> int:
    """"240", "240s", "4m", "4m30s", "4 min", "1500ms", "1h" -> milliseconds (a bare number is seconds),
    as `stepwatch bands set` reads them; InvalidInput naming the field otherwise, in `_`'s language."""
    _ = _ or Translator("en")
    label = _(FIELD_LABELS.get(name, "step.reference"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or value != value:
            raise InvalidInput(_("step.error_positive", field=label), field=name)
        return round(value * 1000)
    text = "" if value is None or isinstance(value, bool) else str(value).strip()
    if not text:
        raise InvalidInput(_("step.error_required", field=label), field=name)
    try:
        return durations.parse(text)
    except ValueError:
        raise InvalidInput(_("step.error_duration", field=label, value=str(value)[:40]), field=name) from None


def duration_text(ms: int | float | None, *, whole_seconds: bool = False) -> str:
    """Milliseconds as the editor shows them: 4m30s, 45s, 1.5s, 1m45.123s (parse_duration reads it back);
    a fraction of a second as decimals of the seconds, never a bare count of milliseconds. `whole_seconds`
    rounds first (a suggestion copied into the editor: its interval is seconds wide, not milliseconds)."""
    if ms is not None and whole_seconds and ms >= 500:
        ms = round(ms / 1000) * 1000
    if ms is None or round(ms) % 1000 == 0:
        return durations.text(ms)
    minutes, rest = divmod(round(ms), 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0")
    return (f"{minutes}m" if minutes else "") + f"{seconds}s"


def band_of_fields(fields: dict[str, Any], _: Translator | None = None) -> Band:
    """min / reference / max from a form (durations) or JSON (min_ms... in ms, or durations); an error
    names the field at fault (as sent: "min" or "min_ms") and says what is wrong in `_`'s language."""
    _ = _ or Translator("en")
    values, sent = {}, {}
    for name in ("min", "reference", "max"):
        if f"{name}_ms" in fields:
            sent[name] = f"{name}_ms"
            raw = fields[f"{name}_ms"]
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise InvalidInput(_("step.error_whole_ms", field=f"{name}_ms"), field=f"{name}_ms")
            values[name] = raw
        else:
            sent[name] = name
            values[name] = parse_duration(fields.get(name), name, _)
    low, reference, high = values["min"], values["reference"], values["max"]
    # the order of analysis.bands.Band's own checks, with the words of the viewer's language
    if low <= 0:
        raise InvalidInput(_("step.error_positive", field=_("step.min")), field=sent["min"])
    if low > reference:
        raise InvalidInput(_("step.error_min_above_reference", min=_.minutes(low), reference=_.minutes(reference)),
                           field=sent["min"])
    if reference > high:
        raise InvalidInput(_("step.error_reference_above_max", reference=_.minutes(reference), max=_.minutes(high)),
                           field=sent["reference"])
    try:
        return Band(low, reference, high)
    except BandError as exc:  # a rule Band has that this page does not check itself
        raise InvalidInput(str(exc)) from None


def proposal_preview(client: Client, settings: Settings, user: User, site: str, step: str,
                     proposal: Proposal) -> dict[str, Any]:
    """The preview alone (the JSON answer of a preview): the stored analysis rows and a few lookups."""
    if proposal.stratum:
        return kind_preview(band_versions_by_step(client, site, step).get(step, []), proposal,
                            band_versions.kind_title(processes.latest(client, site), proposal.stratum))
    scope = access.scope_of(client, user, site)
    latest = figures.latest_stats(client, site, step=step, managers=scope.managers)
    return band_preview(latest.rows, scope.team_of, band_versions_by_step(client, site, step).get(step, []), proposal,
                        min_sessions=settings.analysis_min_sessions, window=(latest.window_start, latest.window_end))


def check_scope(client: Client, user: User, site: str, step: str, team: str, stratum: str = "") -> str:
    """The site, the step, the team and the kind of client exist, and `user` may set that team's band (or
    every team's); the kind as stored ("" for every kind)."""
    _ = Translator(user.language)
    sites.get_site(client, site)  # NotFound names the site
    process = processes.latest(client, site)
    if process is None or step not in {s.key for s in process.steps}:
        raise NotFound(_("step.error_no_step", site=site, step=step))
    site_teams = teams.list_teams(client, site)
    if team and team not in site_teams:
        raise InvalidInput(_("step.error_team", team=team, site=site), field="team")
    if user.role == "director" and (not team or team not in user.teams):
        raise Forbidden(_("step.error_director", teams=", ".join(user.teams) or "–"))
    return checked_kind(process, stratum, _)


def checked_kind(process: processes.Process | None, stratum: str, _: Translator) -> str:
    """The kind of client as stored ("" for every kind), or InvalidInput in the viewer's words naming the
    field and what may be chosen."""
    try:
        return band_versions.check_stratum(process, stratum)
    except InvalidInput:
        kinds = ", ".join(k["title"] for k in kinds_of(process))
        raise InvalidInput(_("step.error_kind", kind=stratum[:80], kinds=kinds) if kinds
                           else _("step.error_no_kinds"), field="stratum") from None


def save_band(client: Client, user: User, site: str, step: str, band: Band, team: str, effective_from: date,
              reason: str, stratum: str = "") -> str:
    """Record the band; the kind of client as stored."""
    stratum = check_scope(client, user, site, step, team, stratum)
    band_versions.add_version(client, site, step, team, band.min_ms, band.reference_ms, band.max_ms, effective_from,
                              actor=user.name, reason=reason, stratum=stratum)
    return stratum


def saved_words(client: Client, site: str, step: str, team: str, stratum: str) -> tuple[str, str, str]:
    """The step's title, the team's title and the kind's title, for the message after saving."""
    process = processes.latest(client, site)
    titles = {s.key: s.title for s in process.steps} if process else {}
    return (titles.get(step, step), teams.list_teams(client, site).get(team, team) if team else "",
            band_versions.kind_title(process, stratum))


async def set_band(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Set a step's band from a date, with a reason (admin: any band; director: their teams' overrides)."""
    step = request.match_info["step"]
    _ = Translator(who.user.language)
    site = str(fields.get("site") or request.query.get("site") or "")
    if not site:
        names = [s.name for s in await run(request, sites.list_sites)]
        if len(names) != 1:
            raise InvalidInput(_("step.error_site"), field="site")
        site = names[0]
    band = band_of_fields(fields, _)
    team = str(fields.get("team") or "").strip()
    stratum = str(fields.get("stratum") or "").strip()
    effective_text = str(fields.get("effective_from") or "").strip()
    try:
        effective = date.fromisoformat(effective_text) if effective_text else datetime.now(UTC).date()
    except ValueError:
        raise InvalidInput(_("step.error_date"), field="effective_from") from None
    reason = str(fields.get("reason") or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(_("step.error_reason_long", n=MAX_REASON), field="reason")
    if fields.get("preview") in (True, "1", "true", "on"):
        # Nothing is saved: the page comes back with the band as typed and its counts (no reason needed yet).
        stratum = await run(request, check_scope, who.user, site, step, team, stratum)
        preview = await run(request, proposal_preview, request.app[app_keys.SETTINGS], who.user, site, step,
                            Proposal(band, team, effective, stratum))
        back = {k: v for k, v in request.query.items() if k in ("since", "until", "suggest")}
        back.update({"site": site, "min": duration_text(band.min_ms), "reference": duration_text(band.reference_ms),
                     "max": duration_text(band.max_ms), "team": team, "effective_from": effective.isoformat(),
                     **({"stratum": stratum} if stratum else {}), **({"reason": reason} if reason else {})})
        return {**answered(site, step, team, stratum, band, effective), "saved": False, "preview": preview,
                "message": "", "redirect": f"/steps/{segment(step)}?{urlencode(back)}#preview"}
    if not reason:
        raise InvalidInput(_("step.error_reason"), field="reason")
    stratum = await run(request, save_band, who.user, site, step, band, team, effective, reason, stratum)
    title, team_title, kind = await run(request, saved_words, site, step, team, stratum)
    whom = team_title or _("step.every_team")
    return {
        **answered(site, step, team, stratum, band, effective), "saved": True, "preview": None,
        "message": (_("step.kind_band_saved", step=title, team=whom, kind=kind, date=_.date(effective)) if stratum
                    else _("step.band_saved", step=title, team=whom, date=_.date(effective))),
        "redirect": f"/steps/{segment(step)}?site={segment(site)}",
    }


def answered(site: str, step: str, team: str, stratum: str, band: Band, effective: date) -> dict[str, Any]:
    return {"site": site, "step": step, "team": team, "stratum": stratum, "min_ms": band.min_ms,
            "reference_ms": band.reference_ms, "max_ms": band.max_ms, "effective_from": effective}


def register(app: web.Application) -> None:
    # a manager account gets 403: these pages compare managers with each other (its own are at /me)
    step = text("step", "the step's key", required=True)
    add_page(app, "/steps", steps_page, roles=VIEW_ROLES, name="steps", query=(SITE,),
             response=answer(site="string", min_sessions="integer", analysis="object?", steps="array", sites="array"))
    add_page(app, "/steps/{step}", step_page, roles=VIEW_ROLES, name="step", path_params=(step,), query=(
        SITE, day("since", "first day of the window"), day("until", "last day of the window"),
        choice("suggest", ("0", "1"), "1: suggest a band from the last 30 days"),
        choice("table", ("managers", "history"), "which table ?format=csv exports"),
        *(text(n, f'preview: the {n} of a band not saved yet, a duration ("4m30s")')
          for n in ("min", "reference", "max")),
        text("team", "preview: the team whose override it would be (default: every team)"),
        text("stratum", 'preview: the kind of client it would be for, "segment=vip" (default: every kind)'),
        day("effective_from", "preview: in force from (default: today)"),
        text("reason", "preview: the reason typed, kept in the editor")),
             response=answer(site="string", step="string", title="string", period="object", metric="string",
                             analysis="object?", band="object?", team_bands="array", kinds="array",
                             kind_bands="array", history="array",
                             managers="array", histogram="array", visits_imported="integer", suggested="boolean",
                             suggestion="object?", editable_teams="array", preview="object?", sites="array"))
    durations = [text(n, 'a duration: "240" (seconds), "4m", "4m30s", "1500ms", "1h"') for n in
                 ("min", "reference", "max")]
    add_action(app, "/steps/{step}/bands", set_band, roles=EDIT_ROLES, name="step_bands", path_params=(step,),
               query=(SITE, day("since", "preview: the page's window to return to"), day("until", "preview: as since"),
                      choice("suggest", ("0", "1"), "preview: return with the suggestion shown")), body=(
                   text("site", "the site (default: the only site)"), *durations,
                   *(whole(f"{n}_ms", 0, 86_400_000, f"{n} in milliseconds, instead of {n}")
                     for n in ("min", "reference", "max")),
                   text("team", "a team's override (default: every team's band)"),
                   text("stratum", 'for one kind of client, a declared session attribute\'s value: "segment=vip" '
                                   "(default: every kind)"),
                   day("effective_from", "in force from (default: today)"),
                   text("reason", "why (required to save; not to preview)"),
                   flag("preview", "true: save nothing, answer how many medians the band would put outside")),
               response=answer(site="string", step="string", team="string", stratum="string", min_ms="integer",
                               reference_ms="integer", max_ms="integer", effective_from="string", saved="boolean",
                               preview="object?", **DONE))
