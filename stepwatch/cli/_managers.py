"""`stepwatch managers`: the directory of managers' names (import a CSV, list, set one), and a person's
data rights (export everything stored about them, erase them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from kernel import audit, managers, sites, teams
from stepwatch import privacy
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


def cmd_managers_export(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    target = Path(args.file)
    if getattr(args, "forwarded", False) and not target.is_absolute():
        raise CliError("stepwatch serve holds the data directory and writes the file: give FILE as an absolute path")
    privacy.find_person(client, args.site, args.id)  # unknown site or manager: said before a file is made
    try:
        counts = privacy.export(client, args.site, args.id, target, actor=audit.cli_actor())
    except OSError as exc:
        raise CliError(f"cannot write {args.file}: {exc.strerror or exc}") from None
    out.write(f"{args.file}: {sum(counts.values())} rows of manager {args.id} (site {args.site}) in "
              f"{len(counts)} CSV files and README.txt\n")
    return 0


def cmd_managers_erase(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    person = privacy.find_person(client, args.site, args.id)
    if not args.reason.strip():
        raise CliError("say why with --reason (kept in the audit log; do not name the person)")
    if not args.yes:
        if getattr(args, "forwarded", False):
            raise CliError("stepwatch serve holds the data directory and cannot ask: confirm with --yes")
        sys.stderr.write(f"Erase manager {person.manager} of site {person.site} from every table, the spool and "
                         f"the audit log ({len(person.flags)} flag(s), {len(person.assignments)} coaching "
                         f"assignment(s), {len(person.accounts)} account(s))? This cannot be undone. "
                         f"Type the id to confirm: ")
        sys.stderr.flush()
        if sys.stdin.readline().strip() != person.manager:
            raise CliError("not confirmed: nothing erased")
    result = privacy.erase(client, args.site, args.id, actor=audit.cli_actor(), reason=args.reason,
                           spool_dir=args.settings.spool_path)
    if args.json:
        out.write(json.dumps(result.as_dict()) + "\n")
    else:
        removed = {t: n for t, n in result.rows.items() if n}
        out.write(f"erased manager {args.id} of site {args.site}: {sum(removed.values())} rows "
                  f"({', '.join(f'{t} {n}' for t, n in sorted(removed.items())) or 'none'}); "
                  f"systemic flags listing them: {result.systemic_flags}; "
                  f"audit entries and messages naming them, redacted: {result.audit_redacted} and "
                  f"{result.messages_redacted}; spooled events: {result.spool_rows}; "
                  f"the audit keeps the erasure as {result.subject}\n")
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
    a = manager_sub.add_parser("export", help="everything stored about one manager as a ZIP of CSV files with a "
                                              "README (their right of access; audited)")
    a.add_argument("id", help="the manager id the tracker reports")
    a.add_argument("file", metavar="FILE.zip")
    a.add_argument("--site", required=True)
    a.set_defaults(func=cmd_managers_export)
    a = manager_sub.add_parser("erase", help="remove one manager from every table, derived ones included, and "
                                             "from the spool; the audit keeps only that an erasure happened")
    a.add_argument("id", help="the manager id the tracker reports")
    a.add_argument("--site", required=True)
    a.add_argument("--reason", required=True, help="why (kept in the audit log; do not name the person)")
    a.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    a.add_argument("--json", action="store_true", help="what was removed, as JSON")
    a.set_defaults(func=cmd_managers_erase)
