"""`stepwatch serve` and `stepwatch demo`: the commands that run the server."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from datetime import UTC, datetime
from typing import Any

from kernel import migrations, storage
from kernel.settings import Settings
from stepwatch.cli._common import (
    CliError,
)


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
            demo.analyse_previous_week(client, settings, today)
            runs = analysis_run.analyze(client, settings, only_site=demo.SITE)
            flagged = len(runs[0].result.drawdowns) if runs else 0
            logins = demo.create_accounts(client, truth)
            coached = demo.seed_coaching(client, settings, truth, today=today)
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
    print(f"coaching: {len(coached)} assignments (stepwatch coaching list {truth.site})", flush=True)
    print("accounts (one per role; the passwords are shown only now):")
    for name, role, password in logins:
        print(f"  {role:9s} {name:10s} password {password}", flush=True)
    if args.no_serve:
        return 0
    return cmd_serve(args, settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from kernel import logs
    from stepwatch.app import ADMIN_TOKEN, create_app

    logs.configure(settings.log_level)
    from collector.memory import tune_allocators

    tune_allocators(settings.embedded)  # before the engine loads and its threads start
    data_dir = settings.data_dir.resolve()
    for private in (data_dir, settings.spool_path.resolve()):  # the secret key and the spool live there too
        if settings.embedded or private.exists():
            storage.make_private_dir(private)
    if settings.embedded:
        holder = storage.read_serve_info(data_dir)
        if holder is not None:
            raise storage.StoreLocked(data_dir, holder.pid, holder.url)

    from stepwatch.cli import run_in_server  # the package imports this module: import at call time

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


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the collector and dashboards (applies pending migrations first)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="create a demo organisation with a realistic history, then serve")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--managers", type=int, default=24)
    p.add_argument("--days", type=int, default=42)
    p.add_argument("--truth", metavar="FILE", help="write what was planted (drawdowns, skills) as JSON")
    p.add_argument("--no-serve", action="store_true", help="only create the data")
    p.set_defaults(func=cmd_demo)
