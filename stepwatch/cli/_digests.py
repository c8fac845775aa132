"""`stepwatch digests send`: the weekly digests for directors and trainers (docs/digests.md)."""

from __future__ import annotations

import argparse
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from stepwatch.cli._common import CliError


def cmd_digests_send(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import outbox
    from stepwatch import digests

    if not args.dry_run and not outbox.configured(args.settings):
        raise CliError("nothing to send by: set STEPWATCH_SMTP_HOST or STEPWATCH_WEBHOOK_URL (or use --dry-run)")
    report = digests.send(client, args.settings, site=args.site, to=args.to, dry_run=args.dry_run)
    if args.dry_run:
        for d in report.digests:
            out.write(f"=== {d.kind} {d.account} ({d.email or 'no e-mail address'}), site {d.site}, {d.week}\n")
            out.write(f"Subject: {d.subject}\n\n{d.text}\n")
        out.write(f"digests composed: {report.composed}; nothing queued (--dry-run)\n")
        return 0
    out.write(f"digests composed: {report.composed}; messages queued: {report.queued}, queued earlier this week: "
              f"{report.already}, recipients without an e-mail address: {report.no_address} "
              "(stepwatch users email NAME ADDRESS); the server delivers them "
              "(or: stepwatch coaching notifications --deliver)\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("digests", help="weekly digests for directors and trainers, by e-mail and webhook")
    digest_sub = p.add_subparsers(title="digest commands", metavar="ACTION", required=True)
    a = digest_sub.add_parser("send", help="queue this week's digests not queued yet (once per recipient and week)")
    a.add_argument("--site", default=None, help="only this site")
    a.add_argument("--to", default=None, metavar="NAME", help="only this account (a director or trainer)")
    a.add_argument("--dry-run", action="store_true", help="print the digests, queue nothing")
    a.set_defaults(func=cmd_digests_send)
