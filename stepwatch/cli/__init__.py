"""The `stepwatch` command. Settings come from the environment here, and only here.

Commands that use the store run against the configured ClickHouse. With the embedded engine
only one process may open the data directory; while `stepwatch serve` holds it, every other
command is sent to that server (over loopback, with the token it left in serve.json) and runs
inside it, so operators can keep using the CLI. `serve` itself stops with a clear message.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from kernel import migrations, storage
from kernel.errors import StepwatchError
from kernel.settings import Settings, SettingsError
from stepwatch import memory
from stepwatch.cli import _accounts, _admin, _analysis, _coaching, _digests, _eventlog, _managers, _serve, _sites
from stepwatch.cli._common import CliError, _first_line, format_duration, parse_duration
from stepwatch.cli._serve import cmd_demo, cmd_serve

__all__ = ["CliError", "build_parser", "format_duration", "main", "parse_duration", "run", "run_in_server"]

Command = Callable[[argparse.Namespace, Client, IO[str]], int]


def main(argv: list[str] | None = None) -> None:
    # Before the engine, the spool or the secret key make a file: what stepwatch writes is its
    # owner's only (the data directory itself is made 0700 where it is created).
    os.umask(0o077)
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
        if args.func in (cmd_serve, cmd_demo):  # serve tunes its allocators for ingest (collector/memory.py)
            return int(args.func(args, settings))
        memory.keep_freed_memory()  # an analysis reuses what it freed (stepwatch/memory.py)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepwatch",
        description="Process monitor for CRM teams. Configuration: STEPWATCH_* environment variables (see README).",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for part in (_serve, _admin, _sites, _analysis, _coaching, _accounts, _managers, _digests, _eventlog):
        part.register(sub)
    return parser
