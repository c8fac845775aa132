"""`stepwatch managers`: the directory of managers' names (import a CSV, list, set one)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from kernel import audit, managers, sites, teams
from stepwatch.cli._common import CliError, _line


def cmd_managers_import(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    rows, bad = managers.parse_csv(data)
    result = managers.import_rows(client, args.site, rows, actor=audit.cli_actor(), reason=args.reason, bad=bad)
    if args.json:
        out.write(json.dumps(result.as_dict(), ensure_ascii=False) + "\n")
    else:
        out.write(f"{args.file} into site {args.site}: {len(result.added)} added, {len(result.changed)} changed, "
                  f"{len(result.unchanged)} unchanged, {len(result.moved)} moved to a team, "
                  f"{len(result.bad)} bad row(s)\n")
        for line, reason in result.bad:
            out.write(f"  line {line}: {reason}\n")
    if result.good == 0:
        raise CliError(f"nothing imported from {args.file}: no good row")
    return 0


def cmd_managers_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    membership = teams.members(client, args.site)
    listed = [{"id": m.manager, "name": m.name, "team": membership.get(m.manager, ""), "email": m.email}
              for m in managers.directory(client, args.site).values()]
    if args.json:
        out.write(json.dumps(listed, ensure_ascii=False) + "\n")
        return 0
    out.write(_line("id", "name", "team", "email"))
    for m in listed:
        out.write(_line(m["id"], m["name"], m["team"] or "-", m["email"] or "-"))
    return 0


def cmd_managers_set(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    entry, changed = managers.set_manager(client, args.site, args.id, name=args.name, email=args.email,
                                          actor=audit.cli_actor(), reason=args.reason)
    out.write(f"manager {entry.manager} is {entry.name}" + (f" <{entry.email}>" if entry.email else "")
              + ("" if changed else " already") + "\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("managers", help="the managers' names: import a CSV, list, set one (audited)")
    manager_sub = p.add_subparsers(title="manager commands", metavar="ACTION", required=True)
    a = manager_sub.add_parser("import", help="read a CSV (UTF-8, columns id,name and optionally team,email); "
                                              "bad rows are reported by line, the good ones kept")
    a.add_argument("file", metavar="FILE.csv")
    a.add_argument("--site", required=True)
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.add_argument("--json", action="store_true", help="the outcome as JSON")
    a.set_defaults(func=cmd_managers_import)
    a = manager_sub.add_parser("list", help="the managers with a name: id, name, team, e-mail")
    a.add_argument("--site", required=True)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_managers_list)
    a = manager_sub.add_parser("set", help="set one manager's name (and e-mail)")
    a.add_argument("id", help="the manager id the tracker reports")
    a.add_argument("--site", required=True)
    a.add_argument("--name", required=True)
    a.add_argument("--email", default=None, help="empty: none; left out: unchanged")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_managers_set)
