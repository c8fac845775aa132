"""`stepwatch bands`, `analyze`, `stats` and `flags`: the analysis from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from kernel import audit, band_versions, flag_store, processes, sites, storage, teams
from kernel.managers import display as manager_display
from kernel.managers import names as manager_names
from stepwatch.cli._common import (
    CliError,
    _json_default,
    _line,
    _parse_date,
    _process_of,
    format_duration,
    parse_duration,
)


def cmd_bands_set(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from analysis.bands import Band, BandError

    process = _process_of(client, args.site)
    process.step(args.step)  # NotFound names the step
    if args.team and args.team not in teams.list_teams(client, args.site):
        raise CliError(f"no team {args.team!r} on site {args.site}")
    try:
        band = Band(parse_duration(args.min), parse_duration(args.reference), parse_duration(args.max))
    except BandError as exc:
        raise CliError(f"band refused: {exc}") from None
    stratum = band_versions.check_stratum(process, args.stratum)  # names the field before anything is written
    effective = _parse_date(args.effective_from) if args.effective_from else datetime.now(UTC).date()
    band_versions.add_version(client, args.site, args.step, args.team, band.min_ms, band.reference_ms, band.max_ms,
                              effective, actor=audit.cli_actor(), reason=args.reason, stratum=stratum)
    who = f"team {args.team}" if args.team else "every team"
    kind = f", {stratum} clients" if stratum else ""
    out.write(f"band of {args.step} for {who}{kind} from {effective}: min {format_duration(band.min_ms)}, "
              f"reference {format_duration(band.reference_ms)}, max {format_duration(band.max_ms)}\n")
    return 0


def cmd_bands_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    listed = band_versions.versions(client, args.site, args.step, stratum=None)  # every kind of client's too
    if args.json:
        out.write(json.dumps([v.__dict__ for v in listed], default=_json_default) + "\n")
        return 0
    out.write("step\tteam\tclients\tfrom\tmin\treference\tmax\tset by\treason\n")
    for v in listed:
        out.write(_line(v.step, v.team or "(all)", v.stratum or "(all)", v.effective_from, format_duration(v.min_ms),
                        format_duration(v.reference_ms), format_duration(v.max_ms), v.set_by, v.reason))
    return 0


def cmd_bands_suggest(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    import numpy as np

    from analysis.bands import BandError, suggest_band

    process = _process_of(client, args.site)
    until = _parse_date(args.until) + timedelta(days=1) if args.until else datetime.now(UTC).date() + timedelta(days=1)
    since = _parse_date(args.since) if args.since else until - timedelta(days=29)
    if args.apply and not args.reason.strip():
        raise CliError("--apply needs --reason (kept in the audit log)")
    storage.refresh_session_steps(client, args.site)
    pairs = storage.session_step_times(client, args.site, since, until, args.metric)
    rows = []
    for step in process.steps:
        own = [p for p in pairs if p.step == step.key]
        if not own:
            rows.append({"step": step.key, "n": 0, "error": "no sessions in the period"})
            continue
        times = np.concatenate([p.times_ms for p in own])
        managers = np.concatenate([np.full(len(p.times_ms), p.manager) for p in own])
        try:
            suggestion = suggest_band(times, managers=managers)
        except BandError as exc:
            rows.append({"step": step.key, "n": int(times.size), "error": str(exc)})
            continue
        band = suggestion.band
        rows.append({"step": step.key, "n": suggestion.n, "managers": suggestion.managers,
                     "min_ms": band.min_ms, "reference_ms": band.reference_ms, "max_ms": band.max_ms,
                     "reference_ci_ms": suggestion.reference_ci_ms, "method": suggestion.method})
    if args.json:
        out.write(json.dumps({"site": args.site, "since": since.isoformat(), "until": (until - timedelta(days=1))
                              .isoformat(), "metric": args.metric, "steps": rows}) + "\n")
    else:
        out.write(f"suggested bands for {args.site}, sessions from {since} to {until - timedelta(days=1)} "
                  f"({args.metric} time; min/reference/max = P10/median/P90, each manager weighted equally)\n")
        out.write("step\tsessions\tmanagers\tmin\treference\tmax\treference 95% CI\n")
        for row in rows:
            if "error" in row:
                out.write(f"{row['step']}\t{row['n']}\t-\t-\t-\t-\t({row['error']})\n")
                continue
            ci = row["reference_ci_ms"]
            ci_text = f"{format_duration(ci[0])}-{format_duration(ci[1])}" if ci else "-"
            out.write(_line(row["step"], row["n"], row["managers"], format_duration(row["min_ms"]),
                            format_duration(row["reference_ms"]), format_duration(row["max_ms"]), ci_text))
    if args.apply:
        today = datetime.now(UTC).date()
        applied = [r for r in rows if "error" not in r]
        for row in applied:
            band_versions.add_version(client, args.site, row["step"], "", row["min_ms"], row["reference_ms"],
                                      row["max_ms"], today, actor=audit.cli_actor(), reason=args.reason)
        out.write(f"applied {len(applied)} bands from {today}\n")
    return 0


def cmd_analyze(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from stepwatch import analysis_run

    settings = args.settings
    until = _parse_date(args.until) if args.until else None
    show = sys.stderr.isatty() and out is sys.stdout

    def progress(message: str) -> None:
        if show:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    runs = analysis_run.analyze(client, settings, until=until, only_site=args.site, progress=progress)
    if show:
        sys.stderr.write("\r\033[K")
    if args.site and not runs:
        sites.get_site(client, args.site)
    for run in runs:
        counts: dict[str, int] = {}
        for a in run.result.assessments:
            counts[a.status] = counts.get(a.status, 0) + 1
        out.write(f"{run.site}: {run.window.since} to {run.window.until}, {len(run.result.assessments)} manager x step"
                  f" pairs ({', '.join(f'{n} {k}' for k, n in sorted(counts.items())) or 'none'}), "
                  f"{len(run.result.drawdowns)} drawdowns\n")
        if run.without_band:
            out.write(f"  {len({s for _, s, _ in run.without_band})} step(s) have no band yet: "
                      f"stepwatch bands suggest {run.site}\n")
        for d in run.result.drawdowns:
            who = d.manager or f"team {d.team} ({len(d.managers)} managers)"
            out.write(f"  #{d.severity} {d.kind:8s} {who:24s} {d.step:16s} median {format_duration(d.median_ms)} "
                      f"vs reference {format_duration(d.band.reference_ms)}, {_cost(d.kind, d.minutes_lost_per_week)}"
                      f"{_since(d.start_date, d.start_at_least)}\n")
        watches = run.result.watches
        if watches:
            out.write(f"  on watch (drifting toward the max band, not drawdowns): {len(watches)}\n")
            for a in watches:
                out.write(f"    {a.manager:24s} {a.step:16s} {a.reasons[-1]}\n")
    return 0


#: The verdicts in the words the dashboards use (dashboards/messages/verdict.toml).
VERDICT_WORDS = {"ok": "on track", "slow": "slow", "fast": "too fast", "watch": "watch",
                 "insufficient": "too few sessions", "no_band": "no band yet"}


def _since(start: date | None, at_least: bool) -> str:
    if start is None:
        return ""
    return f", at least since {start}" if at_least else f", since {start}"


def _cost(kind: str, minutes_lost: float | None) -> str:
    """A flag's time lost in words; a fast flag loses no time, it may skip work."""
    if kind == "fast":
        return "no time lost (possible skipped work)"
    return "-" if minutes_lost is None else f"{minutes_lost:.0f} min/week lost"


def _stats_note(r: dict[str, Any]) -> str:
    """What a director needs beside a row's verdict, in words."""
    status, band, peers = r["status"], r["band"], r.get("peers")
    notes = []
    if status == "slow" and band and r["median_ms"] is not None and r["median_ms"] <= band["max_ms"] and peers:
        notes.append(f"inside the band, slower than {peers['slower_than']} of {peers['of']} teammates")
    elif status == "slow":
        notes.append("above the max band")
    elif status == "fast":
        notes.append("below the min band: possible skipped work")
    elif status == "watch":
        notes.append("drifting toward the max band, not a drawdown yet")
    elif status == "no_band":
        notes.append(f"the step has no band yet: stepwatch bands suggest {r['site']}")
    above = r.get("minutes_above_reference_per_week")
    if status in ("ok", "watch") and above:
        notes.append(f"{above:.0f} min a week above the reference (not a drawdown)")
    if r.get("flag_kind") == "systemic":
        notes.append("part of a team-wide drawdown on this step")
    return "; ".join(notes) or "-"


def cmd_stats(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from stepwatch import analysis_run

    settings = args.settings
    until = _parse_date(args.until) if args.until else datetime.now(UTC).date()
    since = _parse_date(args.since) if args.since else until - timedelta(days=settings.analysis_window_days - 1)
    if since > until:
        raise CliError("--since must be on or before --until")
    names = [args.site] if args.site else [s.name for s in sites.list_sites(client) if s.enabled]
    if args.site:
        sites.get_site(client, args.site)
    from analysis.stats import Window

    rows = []
    for name in names:
        saved = None if args.fresh or args.since or args.until else analysis_run.saved_stats(client, name)
        if saved is not None and saved[0].until == until:
            # The latest scheduled run covers this window: read it rather than recompute.
            site_rows = saved[2]
            if not args.json:
                out.write(f"# {name}: as analysed at {saved[1]:%Y-%m-%d %H:%M} UTC (--fresh to recompute)\n")
        else:
            site_rows = analysis_run.stats_rows(client, analysis_run.run_site(client, name, settings,
                                                                              Window(since, until)))
        rows += [r for r in site_rows if not args.team or r["team"] == args.team]
    if args.json:
        for row in rows:
            out.write(json.dumps(row, default=_json_default) + "\n")
        return 0
    known = {name: (manager_names(client, name), _step_titles(client, name)) for name in names}
    out.write(_line("manager", "step", "sessions", "median", "p90", "reference", "verdict", "since",
                    "time lost a week", "note"))
    for r in rows:
        people, titles = known.get(r["site"], ({}, {}))
        median = format_duration(r["median_ms"]) if r["median_ms"] is not None else "-"
        p90 = format_duration(r["p90_ms"]) if r["p90_ms"] is not None else "-"
        reference = format_duration(r["band"]["reference_ms"]) if r["band"] else "-"
        lost = f"{r['minutes_lost_per_week']:.0f} min" if r["minutes_lost_per_week"] is not None else "-"
        since = _since(r["start_date"], bool(r["start_at_least"]))[2:] or "-"
        who = f"{people[r['manager']]} ({r['manager']})" if r["manager"] in people else r["manager"]
        out.write(_line(who, titles.get(r["step"], r["step"]), r["n"], median, p90, reference,
                        VERDICT_WORDS.get(r["status"], r["status"]), since, lost, _stats_note(r)))
    return 0


def _step_titles(client: Client, site: str) -> dict[str, str]:
    process = processes.latest(client, site)
    return {s.key: s.title for s in process.steps} if process else {}


def cmd_flags_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    listed = flag_store.current(client, args.site, args.status)
    if args.json:
        out.write(json.dumps([f.__dict__ for f in listed], default=_json_default) + "\n")
        return 0
    people, titles = manager_names(client, args.site), _step_titles(client, args.site)
    out.write(_line("flag", "status", "kind", "team", "manager", "step", "median", "reference", "since",
                    "time lost a week"))
    for f in listed:
        who = (manager_display(people, f.manager) if f.manager
               else f"team-wide ({len(f.managers)} slow managers)")
        since = _since(f.start_date, f.start_at_least)[2:] or "-"
        out.write(_line(f.flag_id, f.status, f.kind, f.team, who, titles.get(f.step, f.step),
                        format_duration(f.median_ms), format_duration(f.reference_ms), since,
                        "none (possible skipped work)" if f.kind == "fast" else f"{f.minutes_lost_per_week:.0f} min"))
    return 0


def cmd_flags_show(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    flag = flag_store.get(client, args.flag_id)
    shown = {**flag.__dict__, "history": flag_store.history(client, flag.flag_id)}
    out.write(json.dumps(shown, default=_json_default, indent=2) + "\n")
    return 0


def cmd_flags_kpi(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    rows = flag_store.resolution_times(client, args.site)
    if args.json:
        out.write(json.dumps(rows) + "\n")
        return 0
    out.write(_line("team", "flags resolved", "median hours to resolve", "p90 hours"))
    for r in rows:
        out.write(_line(r["team"] or "(none)", r["resolved"], f"{r['median_hours']:.1f}", f"{r['p90_hours']:.1f}"))
    return 0


def cmd_flags_move(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from analysis.flags import InvalidTransition, transition

    flag = flag_store.get(client, args.flag_id)
    try:
        target = transition(flag.status, args.target, args.reason)
    except InvalidTransition as exc:
        raise CliError(str(exc)) from None
    flag_store.change_status(client, flag, target.value, actor=audit.cli_actor(), reason=args.reason or "")
    out.write(f"flag {flag.flag_id}: {flag.status} -> {target.value}\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("bands", help="the min, reference and max time of each step (versioned, audited)")
    band_sub = p.add_subparsers(title="band commands", metavar="ACTION", required=True)
    a = band_sub.add_parser("set", help="set a step's band from a date (durations: 90, 90s, 4m, 4m30s, 1500ms)")
    a.add_argument("site")
    a.add_argument("step")
    a.add_argument("--min", required=True)
    a.add_argument("--reference", required=True)
    a.add_argument("--max", required=True)
    a.add_argument("--reason", required=True, help="why (kept in the audit log)")
    a.add_argument("--team", default="", help="override for one team (default: every team)")
    a.add_argument("--stratum", default="", metavar="ATTRIBUTE=VALUE",
                   help="for one kind of client only, a declared session attribute's value, e.g. segment=vip "
                        "(default: every kind)")
    a.add_argument("--from", dest="effective_from", help="date it takes effect, YYYY-MM-DD (default: today)")
    a.set_defaults(func=cmd_bands_set)
    a = band_sub.add_parser("list", help="every version of a site's bands")
    a.add_argument("site")
    a.add_argument("--step")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_bands_list)
    a = band_sub.add_parser("suggest", help="propose bands from the data, shown as a table first")
    a.add_argument("site")
    a.add_argument("--since", help="first day, YYYY-MM-DD (default: 30 days before --until)")
    a.add_argument("--until", help="last day, YYYY-MM-DD (default: today)")
    a.add_argument("--metric", choices=["visible", "active", "wall"], default="visible")
    a.add_argument("--apply", action="store_true", help="record the suggestions as the bands from today")
    a.add_argument("--reason", default="", help="why (needed with --apply)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_bands_suggest)

    p = sub.add_parser("analyze", help="run the analysis once: compare with the bands, open and resolve flags")
    p.add_argument("--site")
    p.add_argument("--until", help="last day of the window, YYYY-MM-DD (default: today)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("stats", help="per manager x step: sessions, median, p90, band, verdict, since when, time lost")
    p.add_argument("--site")
    p.add_argument("--team")
    p.add_argument("--since", help="first day, YYYY-MM-DD (default: the analysis window before --until)")
    p.add_argument("--until", help="last day, YYYY-MM-DD (default: today)")
    p.add_argument("--json", action="store_true", help="one JSON object per manager x step")
    p.add_argument("--fresh", action="store_true", help="recompute now instead of reading the latest analysis")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("flags", help="drawdown flags: list, show, acknowledge, dismiss")
    flag_sub = p.add_subparsers(title="flag commands", metavar="ACTION", required=True)
    a = flag_sub.add_parser("list", help="a site's flags, most costly first")
    a.add_argument("site")
    a.add_argument("--status", choices=["open", "acknowledged", "coaching", "resolved", "dismissed"])
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_flags_list)
    a = flag_sub.add_parser("kpi", help="per team: median and 90th percentile time from a flag's opening to resolution")
    a.add_argument("site")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_flags_kpi)
    a = flag_sub.add_parser("show", help="one flag with its history, as JSON")
    a.add_argument("flag_id")
    a.add_argument("--json", action="store_true", help="accepted for symmetry: the output is JSON either way")
    a.set_defaults(func=cmd_flags_show)
    for name, target, text in (("ack", "acknowledged", "acknowledge a flag"),
                               ("dismiss", "dismissed", "dismiss a flag (a reason is required)"),
                               ("resolve", "resolved", "mark a flag resolved"),
                               ("reopen", "open", "reopen a resolved or dismissed flag (a reason is required)")):
        a = flag_sub.add_parser(name, help=text)
        a.add_argument("flag_id")
        a.add_argument("--reason", default="")
        a.set_defaults(func=cmd_flags_move, target=target)
