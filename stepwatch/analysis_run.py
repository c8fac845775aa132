"""Running the analysis over stored data: stats for a window, and flags kept in step with it.

This composes the parts: it reads session times, teams and band versions from storage, hands
plain arrays to the analysis rules (analysis/flags.py), and stores what they decide. Used by
`stepwatch analyze`, `stepwatch stats`, and the schedule inside `stepwatch serve`.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from analysis.bands import Band, BandVersion, band_in_force
from analysis.flags import (
    Assessment,
    Drawdown,
    PairInput,
    PairSessions,
    RunResult,
    Thresholds,
    assess,
    auto_update,
    date_onsets,
    pair_from_sessions,
    pairs_like_for_like,
    with_earlier,
)
from analysis.stats import Window
from analysis.strata import CaseMix, bands_of_strata, stratum_values
from kernel import band_versions, flag_store, processes, sites, storage, teams
from kernel.settings import Settings
from stepwatch.stratified_read import stratified_step_times

ANALYSIS_ACTOR = "analysis"
# Persistence looks at the last four weekly periods, so sessions are read this far back.
LOOKBACK_DAYS = 28
# A drawdown's start is dated on this many days of daily medians (from the pre-aggregate, which is
# cheap): one that began before the look-back is dated, not given the look-back's first day.
ONSET_DAYS = 90


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        min_sessions=settings.analysis_min_sessions,
        fdr=settings.analysis_fdr,
        material=settings.analysis_material,
        persistent_periods=settings.analysis_persistent_periods,
        systemic_share=settings.analysis_systemic_share,
    )


@dataclass(frozen=True)
class SiteRun:
    site: str
    window: Window
    result: RunResult
    without_band: tuple[tuple[str, str, Any], ...]  # (manager, step, window times) of steps with no band yet
    teams: dict[str, str]
    #: The session attributes the site's process declares, in order: what a stratum key's values are.
    attributes: tuple[str, ...] = ()

    def assessment(self, manager: str, step: str) -> Assessment | None:
        return next((a for a in self.result.assessments if a.manager == manager and a.step == step), None)


def window_ending(until: date, days: int) -> Window:
    return Window(until - timedelta(days=days - 1), until)


def run_site(client: Client, site: str, settings: Settings, window: Window) -> SiteRun:
    """Assess every manager x step of a site over a window (nothing is written)."""
    process = processes.latest(client, site)
    steps = {s.key for s in process.steps} if process else set()
    members = teams.members(client, site)
    versions: dict[str, list[BandVersion]] = defaultdict(list)
    kinds: dict[str, dict[str, list[BandVersion]]] = defaultdict(lambda: defaultdict(list))  # step -> kind -> versions
    for stored in band_versions.versions(client, site, stratum=None):
        (kinds[stored.step][stored.stratum] if stored.stratum else versions[stored.step]).append(BandVersion(
            stored.effective_from, stored.team or None, Band(stored.min_ms, stored.reference_ms, stored.max_ms)))
    lookback = min(window.since, window.until - timedelta(days=LOOKBACK_DAYS - 1))
    storage.refresh_session_steps(client, site)
    declared = {name: tuple(values) for name, values in process.attributes.items()} if process else {}
    rows: list[Any]
    if declared:  # like for like: each session with its stratum
        rows = stratified_step_times(client, site, lookback, window.until + timedelta(days=1),
                                     settings.analysis_metric, declared)
    else:
        rows = storage.session_step_times(client, site, lookback, window.until + timedelta(days=1),
                                          settings.analysis_metric)
    limits = thresholds(settings)
    pairs: list[PairInput] = []
    stratified: list[PairSessions] = []
    without_band = []
    for row in rows:
        if steps and row.step not in steps:
            continue  # a step the current process no longer has
        team = members.get(row.manager, "")
        version = band_in_force(versions.get(row.step, []), window.until, team or None)
        if version is None:
            in_window = (row.days >= np.datetime64(window.since)) & (row.days <= np.datetime64(window.until))
            without_band.append((row.manager, row.step, row.times_ms[in_window]))
            continue
        if declared:
            stratified.append(PairSessions(team, row.manager, row.step, version.band, row.times_ms, row.days,
                                           row.codes, stratum_keys=row.keys, stratum_bands=kind_bands_in_force(
                                               kinds.get(row.step, {}), window.until, team, row.keys, declared)))
            continue
        pairs.append(pair_from_sessions(team=team, manager=row.manager, step=row.step, band=version.band,
                                        durations_ms=row.times_ms, days=row.days, window=window,
                                        thresholds=limits, ordered=True))  # storage's order
    if stratified:
        pairs = pairs_like_for_like(stratified, window, limits)
    # Only drawdowns are dated, once: the days before the look-back are read for their pairs alone.
    result = assess(pairs, limits, window, date_starts=False)
    dated = [i for i, a in enumerate(result.assessments) if a.status in ("slow", "fast")]
    onset_since = min(lookback, window.until - timedelta(days=ONSET_DAYS - 1))
    if dated and onset_since < lookback:
        earlier = storage.pair_daily_medians(client, site, [(pairs[i].manager, pairs[i].step) for i in dated],
                                             onset_since, lookback, settings.analysis_metric)
        for i in dated:
            found = earlier.get((pairs[i].manager, pairs[i].step))
            if found is not None:
                pairs[i] = with_earlier(pairs[i], *found)
    result = date_onsets(result, pairs, limits)
    return SiteRun(site, window, result, tuple(without_band), members, tuple(declared))


def kind_bands_in_force(kinds: dict[str, list[BandVersion]], on: date, team: str, keys: Any,
                        declared: dict[str, tuple[str, ...]]) -> dict[str, Band] | None:  # fmt: skip
    """Each stratum key's band from a step's bands per kind of client in force for the team on the day
    (a team's own before the default, as for every kind); None when no kind has one."""
    in_force = {kind: found.band for kind, found in ((k, band_in_force(v, on, team or None)) for k, v in kinds.items())
                if found is not None}
    return bands_of_strata(list(keys), list(declared), in_force) or None


def case_mix_json(mix: CaseMix | None, attributes: tuple[str, ...]) -> dict[str, Any] | None:
    """A pair's CaseMix for the stats rows and the pages: each stratum as its attribute values."""
    if mix is None:
        return None
    main = mix.main_difference
    return {
        "method": mix.method,
        "median_ms": round(mix.median_ms, 1),
        "adjusted_median_ms": round(mix.adjusted_median_ms, 1),
        "minutes_above_reference_per_week": round(mix.minutes_above_reference_per_week, 2),
        "adjusted_minutes_above_reference_per_week": round(mix.adjusted_minutes_above_reference_per_week, 2),
        "strata": [{"attributes": stratum_values(s.stratum, attributes), "manager_sessions": s.manager_sessions,
                    "manager_share": round(s.manager_share, 4), "team_share": round(s.team_share, 4),
                    "factor": round(s.factor, 3)} for s in mix.strata],
        "main": None if main is None else stratum_values(main.stratum, attributes),
    }


def analyze(client: Client, settings: Settings, *, until: date | None = None, only_site: str | None = None,
            progress: Callable[[str], None] | None = None) -> list[SiteRun]:
    """Run the analysis for every enabled site and bring the stored flags in line with it."""
    until = until or datetime.now(UTC).date()
    window = window_ending(until, settings.analysis_window_days)
    runs = []
    for site in sites.list_sites(client):
        if not site.enabled or (only_site and site.name != only_site):
            continue
        if progress:
            progress(f"{site.name}: assessing {window.since} to {window.until}")
        run = run_site(client, site.name, settings, window)
        sync_flags(client, run, limits=thresholds(settings))
        save_stats(client, run)
        if progress:
            progress(f"{site.name}: {len(run.result.assessments)} manager x step pairs, "
                     f"{len(run.result.drawdowns)} drawdowns")
        runs.append(run)
    return runs


def sync_flags(client: Client, run: SiteRun, limits: Thresholds, now: datetime | None = None) -> None:
    """Open new flags, refresh the figures of standing ones, resolve or reopen by the rules."""
    now = now or datetime.now(UTC)
    period = run.window.until - timedelta(days=run.window.until.weekday())  # the week being analysed
    stored = {f.identity: f for f in flag_store.current(client, run.site)}
    seen = set()
    writes: list[flag_store.StoredFlag] = []
    changes: list[flag_store.StatusChange] = []
    for drawdown in run.result.drawdowns:
        identity = (drawdown.kind, drawdown.team, drawdown.step, drawdown.manager or "")
        seen.add(identity)
        figures = _figures(drawdown)
        flag = stored.get(identity)
        if flag is None:
            flag = flag_store.StoredFlag(flag_id=str(uuid.uuid4()), site=run.site, kind=drawdown.kind,
                                         team=drawdown.team, step=drawdown.step, manager=drawdown.manager or "",
                                         status="open", opened_at=now, updated_at=now, resolved_at=None,
                                         periods_without_condition=0, last_period=period, version=0,
                                         **figures)
            changes.append(flag_store.StatusChange(flag, "", "open", ANALYSIS_ACTOR, "; ".join(drawdown.reasons)))
            writes.append(flag)
            continue
        update = auto_update(flag.status, True, flag.periods_without_condition,
                             resolve_after=limits.resolve_after_periods)
        if update.changed:
            changes.append(flag_store.StatusChange(flag, flag.status, update.status, ANALYSIS_ACTOR, update.note or ""))
        writes.append(replace(flag, **figures, status=update.status, updated_at=now, last_period=period,
                              periods_without_condition=0,
                              resolved_at=None if update.status == "open" else flag.resolved_at))
    for identity, flag in stored.items():
        if identity in seen or flag.last_period >= period:
            continue  # the condition holds, or this week was counted already
        update = auto_update(flag.status, False, flag.periods_without_condition,
                             resolve_after=limits.resolve_after_periods)
        if update.changed:
            changes.append(flag_store.StatusChange(flag, flag.status, update.status, ANALYSIS_ACTOR, update.note or ""))
        writes.append(replace(flag, status=update.status, updated_at=now, last_period=period,
                              periods_without_condition=update.periods_without_condition,
                              resolved_at=now if update.status == "resolved" and update.changed
                              else flag.resolved_at))
    flag_store.write(client, writes)
    flag_store.record_events(client, changes)


def save_stats(client: Client, run: SiteRun) -> None:
    """Keep the run's per-pair figures, so `stats` and the dashboards read them instead of recomputing."""
    now = datetime.now(UTC)
    rows = stats_rows(client, run)
    if rows:
        client.insert("pair_stats", [[run.site, now, run.window.since, run.window.until, r["team"], r["manager"],
                                      r["step"], json.dumps(r, default=str)] for r in rows],
                      column_names=["site", "run_at", "window_start", "window_end", "team", "manager", "step", "row"])


def saved_stats(client: Client, site: str) -> tuple[Window, datetime, list[dict[str, Any]]] | None:
    """The latest run's rows for a site: (window, run time, rows), or None before the first run."""
    result = storage.query_rows(
        client,
        "SELECT window_start, window_end, run_at, row FROM pair_stats WHERE site = {site:String} "
        "AND run_at = (SELECT max(run_at) FROM pair_stats WHERE site = {site:String}) ORDER BY manager, step",
        {"site": site},
    )
    if not result:
        return None
    first = result[0]
    return Window(first["window_start"], first["window_end"]), first["run_at"], [json.loads(r["row"]) for r in result]


def _figures(drawdown: Drawdown) -> dict[str, Any]:
    return {
        "managers": drawdown.managers,
        "window_start": drawdown.window.since,
        "window_end": drawdown.window.until,
        "n": drawdown.n,
        "median_ms": float(drawdown.median_ms),
        "min_ms": drawdown.band.min_ms,
        "reference_ms": drawdown.band.reference_ms,
        "max_ms": drawdown.band.max_ms,
        "q_value": drawdown.q_value,
        "start_date": drawdown.start_date,
        "start_at_least": drawdown.start_at_least,
        "periods_in_drawdown": drawdown.periods_in_drawdown,
        "minutes_lost_per_week": float(drawdown.minutes_lost_per_week),
        "severity": drawdown.severity,
        "reasons": drawdown.reasons,
    }


def covering_flags(flags: list[flag_store.StoredFlag]) -> dict[tuple[str, str], flag_store.StoredFlag]:
    """(manager, step) -> the active flag covering the pair: its own slow or fast flag, else the
    systemic flag of its team and step when it is one of that flag's slow managers."""
    covering: dict[tuple[str, str], flag_store.StoredFlag] = {}
    active = [f for f in flags if f.status in ("open", "acknowledged", "coaching")]
    for f in active:
        if f.kind == "systemic":
            for manager in f.managers:
                covering.setdefault((manager, f.step), f)
    for f in active:
        if f.kind in ("slow", "fast"):
            covering[(f.manager, f.step)] = f  # a pair's own flag comes first
    return covering


def peer_ranks(assessments: tuple[Assessment, ...]) -> list[dict[str, int] | None]:
    """For each pair, {"slower_than": k, "of": n}: n = the other managers of its team on its step with
    enough sessions for a verdict, k = how many of them have a lower median. None when n is 0 or the
    pair has no median ("inside the band, slower than 5 of 5 teammates" is said from it)."""
    medians: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for i, a in enumerate(assessments):
        if a.status != "insufficient" and a.summary is not None:
            medians[(a.team, a.step)].append((i, a.summary.median_ms))
    ranks: list[dict[str, int] | None] = []
    for i, a in enumerate(assessments):
        others = [m for j, m in medians.get((a.team, a.step), []) if j != i]
        if a.summary is None or not others:
            ranks.append(None)
            continue
        mine = a.summary.median_ms
        ranks.append({"slower_than": sum(1 for m in others if m < mine), "of": len(others)})
    return ranks


def stats_rows(client: Client, run: SiteRun) -> list[dict[str, Any]]:
    """One object per manager x step, as `stepwatch stats --json` prints them."""
    flags = covering_flags(flag_store.current(client, run.site))
    peers = peer_ranks(run.result.assessments)
    rows = []
    for a, rank in zip(run.result.assessments, peers, strict=True):
        summary = a.summary
        flag = flags.get((a.manager, a.step))
        lost, above = a.minutes_lost_per_week, a.minutes_above_reference_per_week
        rows.append({
            "site": run.site,
            "team": a.team,
            "manager": a.manager,
            "step": a.step,
            "n": a.n,
            "median_ms": None if summary is None else round(float(summary.median_ms), 1),
            "p25_ms": None if summary is None else round(float(summary.p25_ms), 1),
            "p75_ms": None if summary is None else round(float(summary.p75_ms), 1),
            "p90_ms": None if summary is None else round(float(summary.p90_ms), 1),
            "share_above_max": None if summary is None else round(float(summary.share_above_max), 4),
            "share_below_min": None if summary is None else round(float(summary.share_below_min), 4),
            "band": {"min_ms": a.band.min_ms, "reference_ms": a.band.reference_ms, "max_ms": a.band.max_ms},
            "status": a.status,
            "start_date": a.start_date,
            "start_at_least": a.start_at_least if a.start_date else None,
            "q_value": a.q_value,
            "minutes_lost_per_week": None if lost is None else round(float(lost), 2),
            "minutes_above_reference_per_week": None if above is None else round(float(above), 2),
            "peers": rank,
            "flag_id": flag and flag.flag_id,
            "flag_kind": flag and flag.kind,
            "reasons": list(a.reasons),
            # only for a site that declares session attributes: a row of any other site is as it was
            **({"case_mix": case_mix_json(a.case_mix, run.attributes)} if run.attributes else {}),
        })
    for manager, step, times in run.without_band:
        if times.size == 0:
            continue
        p25, median, p75, p90 = np.percentile(times, [25, 50, 75, 90])
        rows.append({"site": run.site, "team": run.teams.get(manager, ""), "manager": manager, "step": step,
                     "n": int(times.size), "median_ms": round(float(median), 1), "p25_ms": round(float(p25), 1),
                     "p75_ms": round(float(p75), 1), "p90_ms": round(float(p90), 1), "share_above_max": None,
                     "share_below_min": None, "band": None, "status": "no_band", "start_date": None,
                     "start_at_least": None, "q_value": None,
                     "minutes_lost_per_week": None, "minutes_above_reference_per_week": None, "peers": None,
                     "flag_id": None, "flag_kind": None,
                     "reasons": ["the step has no band yet: stepwatch bands suggest / bands set"]})
    return sorted(rows, key=lambda r: (r["manager"], r["step"]))
