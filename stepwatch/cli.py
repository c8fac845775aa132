"""The `stepwatch` command. Settings come from the environment here, and only here.

Commands that use the store run against the configured ClickHouse. With the embedded engine
only one process may open the data directory; while `stepwatch serve` holds it, every other
command is sent to that server (over loopback, with the token it left in serve.json) and runs
inside it, so operators can keep using the CLI. `serve` itself stops with a clear message.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from stepwatch import audit, band_versions, flag_store, migrations, processes, sites, storage, teams, users
from stepwatch.errors import StepwatchError
from stepwatch.settings import Settings, SettingsError

Command = Callable[[argparse.Namespace, Client, IO[str]], int]


class CliError(Exception):
    """A message for the operator; the command exits non-zero."""


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # `stepwatch stats | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def run(argv: list[str], environ: dict[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env(environ)
        if args.func in (cmd_serve, cmd_demo):
            return int(args.func(args, settings))
        return run_with_store(argv, args, settings, sys.stdout)
    except SettingsError as exc:
        print(f"stepwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except (CliError, StepwatchError) as exc:
        print(f"stepwatch: {exc}", file=sys.stderr)
        return 1
    except (storage.StoreLocked, storage.StorageUnavailable) as exc:
        print(f"stepwatch: {exc}", file=sys.stderr)
        return 2


def run_with_store(argv: list[str], args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    if settings.embedded:
        info = storage.read_serve_info(settings.data_dir.resolve())
        if info is not None:
            return _forward(info, argv, out)
    client = storage.connect(settings)
    args.settings = settings
    try:
        migrations.apply_pending(client, settings.retention_days)
        return int(args.func(args, client, out))
    finally:
        client.close()


def _forward(info: storage.ServeInfo, argv: list[str], out: IO[str]) -> int:
    request = urllib.request.Request(
        info.url.rstrip("/") + "/v1/admin/cli",
        data=json.dumps({"argv": argv}).encode(),
        headers={"Authorization": f"Bearer {info.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(
            f"the data directory is held by stepwatch serve (process {info.pid}, {info.url}), "
            f"and sending the command to it failed: {exc}"
        ) from None
    out.write(answer.get("output", ""))
    sys.stderr.write(answer.get("errors", ""))
    return int(answer.get("exit_code", 1))


def run_in_server(argv: list[str], store: storage.Store) -> tuple[int, str, str]:
    """The admin runner given to the app: run a forwarded command on the server's own client."""
    out, err = io.StringIO(), io.StringIO()
    try:
        args = build_parser().parse_args(argv)
        if args.func in (cmd_serve, cmd_demo):
            return 1, "", "stepwatch: serve is already running on this data directory\n"
        args.settings = store.settings
        args.forwarded = True
        code = int(args.func(args, store.client(), out))
    except SystemExit as exc:  # argparse: the client validated argv already, so this is rare
        code = int(exc.code or 0)
    except (CliError, StepwatchError) as exc:
        err.write(f"stepwatch: {exc}\n")
        code = 1
    except ClickHouseError as exc:
        err.write(f"stepwatch: ClickHouse refused: {_first_line(exc)}\n")
        code = 1
    return code, out.getvalue(), err.getvalue()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- serve and demo -------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stepwatch import demo

    if settings.embedded:
        holder = storage.read_serve_info(settings.data_dir.resolve())
        if holder is not None:
            raise storage.StoreLocked(settings.data_dir.resolve(), holder.pid, holder.url)
    client = storage.connect(settings)
    truth = None
    try:
        migrations.apply_pending(client, settings.retention_days)
        if not demo.exists(client):
            from stepwatch import analysis_run

            origin = f"http://{settings.host}:{settings.port or 8000}"
            truth = demo.build(client, seed=args.seed, managers=args.managers, days=args.days, origin=origin)
            today = datetime.now(UTC).date()
            demo.set_bands(client, truth, today, args.days)
            runs = analysis_run.analyze(client, settings, only_site=demo.SITE)
            flagged = len(runs[0].result.drawdowns) if runs else 0
            logins = demo.create_accounts(client, truth)
    finally:
        client.close()
    if truth is None:
        print(f"demo data exists already in this store (site {demo.SITE}); not creating it again", flush=True)
        return 0 if args.no_serve else cmd_serve(args, settings)
    if args.truth:
        demo.write_truth(truth, Path(args.truth))
    slow = sum(p.kind == "slow" for p in truth.planted)
    fast = sum(p.kind == "fast" for p in truth.planted)
    print(f"demo site {truth.site}: {len(truth.managers)} managers in {len(set(truth.managers.values()))} teams, "
          f"{truth.sessions} service sessions, {truth.visits} step visits over {args.days} days; "
          f"planted {slow} slow and {fast} fast drawdowns; the analysis flags {flagged} drawdowns "
          f"(stepwatch flags list {truth.site})", flush=True)
    print("accounts (one per role; the passwords are shown only now):")
    for name, role, password in logins:
        print(f"  {role:9s} {name:10s} password {password}", flush=True)
    if args.no_serve:
        return 0
    return cmd_serve(args, settings)



def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from stepwatch import logs
    from stepwatch.app import ADMIN_TOKEN, create_app

    logs.configure(settings.log_level)
    data_dir = settings.data_dir.resolve()
    if settings.embedded:
        data_dir.mkdir(parents=True, exist_ok=True)
        holder = storage.read_serve_info(data_dir)
        if holder is not None:
            raise storage.StoreLocked(data_dir, holder.pid, holder.url)

    async def serve() -> None:
        app = create_app(settings, admin_runner=run_in_server)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{port}"
        if settings.embedded:
            storage.write_serve_info(data_dir, storage.ServeInfo(os.getpid(), url, app[ADMIN_TOKEN]))
        print(f"stepwatch is serving on {url} (storage: {_describe(settings)})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            if settings.embedded:
                storage.remove_serve_info(data_dir)
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except OSError as exc:
        raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    return 0


def _describe(settings: Settings) -> str:
    if settings.embedded:
        return f"embedded ClickHouse in {settings.data_dir.resolve()}"
    return "ClickHouse server " + storage._redact(settings.clickhouse_url or "")


# -- store commands --------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    # run_with_store has applied pending migrations already; report the ledger.
    done = migrations.applied_versions(client)
    for migration in migrations.discover():
        mark = "applied" if migration.version in done else "pending"
        out.write(f"{migration.version:04d}_{migration.name}: {mark}\n")
    return 0


def cmd_sql(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    if not READ_QUERY.match(args.query):
        raise CliError("stepwatch sql runs read queries only (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
    try:
        result = client.query(args.query)
    except ClickHouseError as exc:
        raise CliError(f"ClickHouse refused the query: {_first_line(exc)}") from None
    names = list(result.column_names)
    if args.format == "json":
        rows = [dict(zip(names, row, strict=True)) for row in result.result_rows]
        out.write(json.dumps(rows, default=_json_default, ensure_ascii=False) + "\n")
    else:
        out.write("\t".join(names) + "\n")
        for row in result.result_rows:
            out.write("\t".join(_tsv(v) for v in row) + "\n")
    return 0


# A per-query readonly setting would be cleaner, but on the chdb backend it sticks to the
# connection (clickhouse-connect applies it with SET and cannot undo it in readonly mode).
READ_QUERY = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _tsv(value: Any) -> str:
    text = _json_default(value) if not isinstance(value, str | int | float) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def cmd_sites_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    site = sites.add_site(client, args.name, args.origin, args.require_signed_identity,
                          actor=audit.cli_actor(), reason=args.reason)
    if args.json:
        shown = {"name": site.name, "key": site.key, "secret": site.secret, "origins": list(site.origins),
                 "require_identity": site.require_identity}
        out.write(json.dumps(shown) + "\n")
        return 0
    out.write(f"site {site.name} created\n  key:    {site.key}   (public: goes in the tracker snippet)\n")
    out.write(f"  secret: {site.secret}   (private: for signing manager ids on your CRM's backend)\n")
    out.write(f'  snippet: <script async src="https://STEPWATCH_HOST/tracker.js" data-site="{site.key}"></script>\n')
    return 0


def cmd_sites_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    listed = sites.list_sites(client)
    if args.json:
        out.write(json.dumps([{"name": s.name, "key": s.key, "origins": list(s.origins), "enabled": s.enabled,
                               "require_identity": s.require_identity} for s in listed]) + "\n")
        return 0
    out.write("name\tenabled\tsigned identity\tkey\torigins\n")
    for s in listed:
        out.write(f"{s.name}\t{'yes' if s.enabled else 'no'}\t{'required' if s.require_identity else 'no'}\t"
                  f"{s.key}\t{' '.join(s.origins)}\n")
    return 0


def cmd_sites_disable(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.set_enabled(client, args.name, False, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"site {args.name} disabled: its events are refused from now on\n")
    return 0


def cmd_sites_enable(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.set_enabled(client, args.name, True, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"site {args.name} enabled\n")
    return 0


def cmd_process_load(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    try:
        text = open(args.file, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    site_name = args.site or _site_in_toml(text)
    if not site_name:
        raise CliError("which site? give --site NAME (or site = \"NAME\" in the file)")
    sites.get_site(client, site_name)  # NotFound if there is no such site
    process = processes.parse(text, site_name)
    stored, changed = processes.load(client, process, actor=audit.cli_actor(), reason=args.reason)
    state = f"loaded as version {stored.version}" if changed else f"unchanged (version {stored.version})"
    out.write(f"process {stored.key} of site {site_name}: {len(stored.steps)} steps, {state}\n")
    return 0


def _site_in_toml(text: str) -> str | None:
    import tomllib

    try:
        value = tomllib.loads(text).get("site")
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def cmd_process_show(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    process = processes.latest(client, args.site)
    if process is None:
        raise CliError(f"site {args.site} has no process yet: stepwatch process load FILE --site {args.site}")
    if args.json:
        out.write(json.dumps({"site": args.site, "version": process.version, **process.definition()}) + "\n")
    else:
        loaded = process.loaded_at.isoformat(timespec="seconds") if process.loaded_at else "?"
        out.write(f"# site {args.site}, version {process.version}, loaded {loaded} by {process.loaded_by}\n")
        out.write(process.to_toml())
    return 0


def cmd_teams_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    teams.add_team(client, args.site, args.name, args.title, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"team {args.name} added to site {args.site}\n")
    return 0


def cmd_teams_assign(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    teams.assign(client, args.site, args.team, args.managers, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"{len(args.managers)} manager(s) now in team {args.team} of site {args.site}\n")
    return 0


def cmd_teams_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    members = teams.members(client, args.site)
    listed = {name: {"title": title, "managers": sorted(m for m, t in members.items() if t == name)}
              for name, title in teams.list_teams(client, args.site).items()}
    if args.json:
        out.write(json.dumps(listed) + "\n")
        return 0
    for name, team in listed.items():
        out.write(f"{name}\t{team['title']}\t{len(team['managers'])} managers\t{' '.join(team['managers'])}\n")
    return 0


def parse_duration(text: str) -> int:
    """"240", "240s", "4m", "4m30s", "1500ms", "1h" -> milliseconds (a bare number is seconds)."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return round(float(value) * 1000)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise CliError(f"not a duration: {text!r} (examples: 90, 90s, 4m, 4m30s, 1500ms)")
    scale = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    return round(sum(float(n) * scale[u] for n, u in parts))


def format_duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


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
    effective = _parse_date(args.effective_from) if args.effective_from else datetime.now(UTC).date()
    band_versions.add_version(client, args.site, args.step, args.team, band.min_ms, band.reference_ms, band.max_ms,
                              effective, actor=audit.cli_actor(), reason=args.reason)
    who = f"team {args.team}" if args.team else "every team"
    out.write(f"band of {args.step} for {who} from {effective}: min {format_duration(band.min_ms)}, "
              f"reference {format_duration(band.reference_ms)}, max {format_duration(band.max_ms)}\n")
    return 0


def cmd_bands_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    listed = band_versions.versions(client, args.site, args.step)
    if args.json:
        out.write(json.dumps([v.__dict__ for v in listed], default=_json_default) + "\n")
        return 0
    out.write("step\tteam\tfrom\tmin\treference\tmax\tset by\treason\n")
    for v in listed:
        out.write(_line(v.step, v.team or "(all)", v.effective_from, format_duration(v.min_ms),
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
                      f"vs reference {format_duration(d.band.reference_ms)}, {d.minutes_lost_per_week:.0f} min/week"
                      f"{', since ' + str(d.start_date) if d.start_date else ''}\n")
    return 0


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
    out.write(_line("manager", "step", "n", "median", "p90", "reference", "status", "min lost/week"))
    for r in rows:
        median = format_duration(r["median_ms"]) if r["median_ms"] is not None else "-"
        p90 = format_duration(r["p90_ms"]) if r["p90_ms"] is not None else "-"
        reference = format_duration(r["band"]["reference_ms"]) if r["band"] else "-"
        lost = f"{r['minutes_lost_per_week']:.0f}" if r["minutes_lost_per_week"] is not None else "-"
        out.write(_line(r["manager"], r["step"], r["n"], median, p90, reference, r["status"], lost))
    return 0


def cmd_flags_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    listed = flag_store.current(client, args.site, args.status)
    if args.json:
        out.write(json.dumps([f.__dict__ for f in listed], default=_json_default) + "\n")
        return 0
    out.write(_line("flag", "status", "kind", "team", "manager", "step", "median", "reference", "min lost/week"))
    for f in listed:
        out.write(_line(f.flag_id, f.status, f.kind, f.team, f.manager or "(team)", f.step,
                        format_duration(f.median_ms),
                        format_duration(f.reference_ms), f"{f.minutes_lost_per_week:.0f}"))
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


def cmd_import(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from pathlib import Path

    from stepwatch import eventlog

    mapping = eventlog.read_mapping_file(Path(args.mapping)) if args.mapping else eventlog.CsvMapping()
    mapping = mapping.merged(eventlog.CsvMapping(
        case=args.case, activity=args.activity, resource=args.resource, start=args.start, end=args.end,
        timestamp=args.timestamp, lifecycle=args.lifecycle, timestamp_format=args.timestamp_format,
        delimiter=args.delimiter or ""))
    options = eventlog.ImportOptions(site=args.site, fmt=args.format, mapping=mapping, timing=args.timing,
                                     max_gap_ms=parse_duration(args.max_gap), strict=args.strict)
    show = sys.stderr.isatty() and out is sys.stdout

    def progress(done: int, total: int, events: int) -> None:
        if show:
            share = done / total if total else 1.0
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r\033[K[{bar:30s}] {share:4.0%} {events:,} events")
            sys.stderr.flush()

    summary = eventlog.import_log(client, args.settings, Path(args.file), options, progress)
    if show:
        sys.stderr.write("\r\033[K")
    for number, reason in summary.first_bad:
        sys.stderr.write(f"{summary.file}: {summary.unit} {number}: {reason}\n")
    if summary.bad_rows > len(summary.first_bad):
        sys.stderr.write(f"... and {summary.bad_rows - len(summary.first_bad)} more bad rows\n")
    if args.json:
        out.write(json.dumps(summary.as_dict()) + "\n")
    else:
        rate = f"{summary.events / summary.seconds:,.0f}" if summary.seconds else "-"
        out.write(f"imported {summary.file} into site {args.site} (source {summary.source}, timing: {summary.timing})\n"
                  f"  events read:     {summary.events:,}\n  visits imported: {summary.visits:,}\n"
                  f"  sessions:        {summary.sessions:,}\n  bad rows:        {summary.bad_rows:,}\n")
        for reason, n in summary.bad_by_reason.most_common():
            out.write(f"    {n:>8,}  {reason}\n")
        for what, n in summary.ignored.most_common():
            out.write(f"  not work intervals ({what}): {n:,}\n")
        if summary.steps_added:
            out.write(f"  steps added to the process: {', '.join(summary.steps_added)}\n")
        out.write(f"  time: {summary.seconds:.1f} s ({rate} events/s)\n")
    return 0 if summary.visits or not summary.events and not summary.bad_rows else 1


def cmd_export(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from stepwatch import eventlog

    since = _parse_date(args.since) if args.since else None
    until = _parse_date(args.until) if args.until else None
    write = eventlog.export_xes if args.format == "xes" else eventlog.export_csv
    if args.file == "-":
        write(client, args.site, out, since, until)
        return 0
    import gzip

    try:
        target = gzip.open(args.file, "wt", encoding="utf-8", newline="") if args.file.endswith(".gz") \
            else open(args.file, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot write {args.file}: {exc.strerror or exc}") from None
    with target:
        count = write(client, args.site, target, since, until)
    out.write(f"exported {count:,} visits of site {args.site} to {args.file} ({args.format})\n")
    return 0


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): from standard input with --password-stdin, else a new random one."""
    if not args.password_stdin:
        return users.new_password(), True
    if getattr(args, "forwarded", False):
        raise CliError("--password-stdin cannot go through a running serve; omit it to get a generated password")
    return sys.stdin.readline().rstrip("\n"), False


def cmd_users_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    password, generated = _password(args)
    user = users.add_user(client, args.name, args.role, password, teams=tuple(args.team or ()),
                          manager_id=args.manager_id, language=args.language, actor=audit.cli_actor(),
                          reason=args.reason)
    out.write(f"user {user.name} ({user.role}) created\n")
    if generated:
        out.write(f"  password: {password}   (shown once; change it with stepwatch users passwd {user.name})\n")
    return 0


def cmd_users_passwd(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    password, generated = _password(args)
    users.set_password(client, args.name, password, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"password of {args.name} changed\n" + (f"  password: {password}   (shown once)\n" if generated else ""))
    return 0


def cmd_users_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    listed = [{"name": u.name, "role": u.role, "teams": list(u.teams), "manager_id": u.manager_id,
               "language": u.language, "disabled": u.disabled} for u in users.list_users(client)]
    if args.json:
        out.write(json.dumps(listed) + "\n")
        return 0
    out.write(_line("name", "role", "teams", "manager id", "language", "disabled"))
    for u in listed:
        out.write(_line(u["name"], u["role"], " ".join(u["teams"]) or "-", u["manager_id"] or "-", u["language"],
                        "yes" if u["disabled"] else "no"))
    return 0


def cmd_tokens_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    token = users.create_token(client, args.user, args.name, actor=audit.cli_actor())
    out.write(f"API token {args.name} for {args.user}: {token}\n  (shown once; send it as Authorization: Bearer)\n")
    return 0


def _line(*values: Any) -> str:
    """One row of a tab-separated table."""
    return "\t".join(str(v) for v in values) + "\n"


def _process_of(client: Client, site: str) -> processes.Process:
    sites.get_site(client, site)
    process = processes.latest(client, site)
    if process is None:
        raise CliError(f"site {site} has no process yet: stepwatch process load FILE --site {site}")
    return process


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepwatch",
        description="Process monitor for CRM teams. Configuration: STEPWATCH_* environment variables (see README).",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the collector and dashboards (applies pending migrations first)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="create a demo organisation with a realistic history, then serve")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--managers", type=int, default=24)
    p.add_argument("--days", type=int, default=42)
    p.add_argument("--truth", metavar="FILE", help="write what was planted (drawdowns, skills) as JSON")
    p.add_argument("--no-serve", action="store_true", help="only create the data")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("migrate", help="apply pending schema migrations and list them")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("sql", help="run a read-only query and print the rows")
    p.add_argument("query")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("sites", help="manage the CRM sites allowed to send events")
    site_sub = p.add_subparsers(title="site commands", metavar="ACTION", required=True)
    a = site_sub.add_parser("add", help="create a site and print its key (and secret)")
    a.add_argument("name")
    a.add_argument("--origin", action="append", required=True, help="allowed page origin; repeat for several")
    a.add_argument("--require-signed-identity", action="store_true", help="accept only HMAC-signed manager ids")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.add_argument("--json", action="store_true", help="print the site as JSON")
    a.set_defaults(func=cmd_sites_add)
    a = site_sub.add_parser("list", help="list sites")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_sites_list)
    for name, func, text in (("disable", cmd_sites_disable, "refuse a site's events from now on"),
                             ("enable", cmd_sites_enable, "accept a disabled site's events again")):
        a = site_sub.add_parser(name, help=text)
        a.add_argument("name")
        a.add_argument("--reason", default="", help="why (kept in the audit log)")
        a.set_defaults(func=func)

    p = sub.add_parser("process", help="load and show a site's process definition (steps and URL rules)")
    process_sub = p.add_subparsers(title="process commands", metavar="ACTION", required=True)
    a = process_sub.add_parser("load", help="load a TOML process definition (a new version when it changed)")
    a.add_argument("file")
    a.add_argument("--site", help="the site it belongs to (default: site = ... in the file)")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_process_load)
    a = process_sub.add_parser("show", help="print a site's current process definition as TOML")
    a.add_argument("site")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_process_show)

    p = sub.add_parser("teams", help="manage teams of managers (the analysis compares peers within a team)")
    team_sub = p.add_subparsers(title="team commands", metavar="ACTION", required=True)
    a = team_sub.add_parser("add", help="create a team")
    a.add_argument("name")
    a.add_argument("--site", required=True)
    a.add_argument("--title", default="", help="display name (default: the name)")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_teams_add)
    a = team_sub.add_parser("assign", help="put managers (ids as the tracker reports them) in a team")
    a.add_argument("team", help='the team; "" removes the managers from their team')
    a.add_argument("managers", nargs="+", metavar="MANAGER_ID")
    a.add_argument("--site", required=True)
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_teams_assign)
    a = team_sub.add_parser("list", help="list a site's teams and their managers")
    a.add_argument("--site", required=True)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_teams_list)

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

    p = sub.add_parser("users", help="accounts: admin, director, trainer, manager (passwords hashed with Argon2id)")
    user_sub = p.add_subparsers(title="user commands", metavar="ACTION", required=True)
    a = user_sub.add_parser("add", help="create an account; prints a generated password unless --password-stdin")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["admin", "director", "trainer", "manager"])
    a.add_argument("--team", action="append", help="a director's teams (repeat), or a manager's team")
    a.add_argument("--manager-id", default="", help="a manager account: the id the tracker reports for them")
    a.add_argument("--language", default="en", choices=["en", "ru"])
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_users_add)
    a = user_sub.add_parser("passwd", help="set a new password (generated unless --password-stdin)")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true")
    a.add_argument("--reason", default="")
    a.set_defaults(func=cmd_users_passwd)
    a = user_sub.add_parser("list", help="list accounts")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_users_list)

    p = sub.add_parser("tokens", help="API tokens (Bearer) for scripts, with the scope of their user")
    token_sub = p.add_subparsers(title="token commands", metavar="ACTION", required=True)
    a = token_sub.add_parser("add", help="create a token for a user; printed once")
    a.add_argument("user")
    a.add_argument("--name", required=True, help="what the token is for")
    a.set_defaults(func=cmd_tokens_add)

    p = sub.add_parser("analyze", help="run the analysis once: compare with the bands, open and resolve flags")
    p.add_argument("--site")
    p.add_argument("--until", help="last day of the window, YYYY-MM-DD (default: today)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("stats", help="per manager x step: sessions, median, p90, band, status, minutes lost")
    p.add_argument("--site")
    p.add_argument("--team")
    p.add_argument("--since", help="first day, YYYY-MM-DD (default: the analysis window before --until)")
    p.add_argument("--until", help="last day, YYYY-MM-DD (default: today)")
    p.add_argument("--json", action="store_true", help="one JSON object per manager x step")
    p.add_argument("--fresh", action="store_true", help="recompute now instead of reading the latest analysis")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("import", help="import an event log (CSV or XES, gzip or not) as step visits")
    p.add_argument("file")
    p.add_argument("--site", required=True)
    p.add_argument("--format", choices=["csv", "xes"], help="default: from the file name")
    p.add_argument("--mapping", metavar="FILE", help="CSV columns as TOML or JSON (keys as the options below)")
    for column in ("case", "activity", "resource", "start", "end", "timestamp", "lifecycle"):
        p.add_argument(f"--{column}", metavar="COLUMN", help=f"CSV column of the {column}")
    p.add_argument("--timestamp-format", help="strptime format, or unix / unix_ms (default: ISO 8601)")
    p.add_argument("--delimiter", help="CSV delimiter (default ,)")
    p.add_argument("--timing", choices=["auto", "pairs", "gaps"], default="auto",
                   help="pairs: start/complete events; gaps: time since the resource's previous event in the case")
    p.add_argument("--max-gap", default="4h", help="gaps: longest gap taken as work (default 4h)")
    p.add_argument("--strict", action="store_true", help="refuse rows of steps the site's process does not have")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export step visits as an event log (CSV or XES) for process-mining tools")
    p.add_argument("file", help="output file (.gz: compressed; - : standard output)")
    p.add_argument("--site", required=True)
    p.add_argument("--format", choices=["csv", "xes"], required=True)
    p.add_argument("--since", help="first day, YYYY-MM-DD")
    p.add_argument("--until", help="last day, YYYY-MM-DD (included)")
    p.set_defaults(func=cmd_export)

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
    a = flag_sub.add_parser("show", help="one flag with its history")
    a.add_argument("flag_id")
    a.set_defaults(func=cmd_flags_show)
    for name, target, text in (("ack", "acknowledged", "acknowledge a flag"),
                               ("dismiss", "dismissed", "dismiss a flag (a reason is required)"),
                               ("resolve", "resolved", "mark a flag resolved"),
                               ("reopen", "open", "reopen a resolved or dismissed flag (a reason is required)")):
        a = flag_sub.add_parser(name, help=text)
        a.add_argument("flag_id")
        a.add_argument("--reason", default="")
        a.set_defaults(func=cmd_flags_move, target=target)
    return parser
