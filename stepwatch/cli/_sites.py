"""`stepwatch sites`, `process` and `teams`: who sends events, their steps, and who works together."""

from __future__ import annotations

import argparse
import json
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from kernel import audit, discovery, processes, sites, teams
from stepwatch.cli._common import (
    CliError,
)


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
                               "require_identity": s.require_identity, "cost_per_hour": s.cost_per_hour,
                               "currency": s.currency or None} for s in listed]) + "\n")
        return 0
    out.write("name\tenabled\tsigned identity\tcost per hour\tkey\torigins\n")
    for s in listed:
        cost = "–" if s.cost_per_hour is None else f"{s.cost_per_hour:g} {s.currency}"
        out.write(f"{s.name}\t{'yes' if s.enabled else 'no'}\t{'required' if s.require_identity else 'no'}\t"
                  f"{cost}\t{s.key}\t{' '.join(s.origins)}\n")
    return 0


def cmd_sites_disable(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.set_enabled(client, args.name, False, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"site {args.name} disabled: its events are refused from now on\n")
    return 0


def cmd_sites_enable(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.set_enabled(client, args.name, True, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"site {args.name} enabled\n")
    return 0


def cmd_sites_cost(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    if args.clear == (args.per_hour is not None):
        raise CliError("give --per-hour AMOUNT --currency CODE, or --clear")
    if args.per_hour is not None and not args.currency:
        raise CliError("--currency is needed with --per-hour (an ISO 4217 code such as EUR, USD or RUB)")
    site = sites.set_cost(client, args.name, None if args.clear else args.per_hour, args.currency or "",
                          actor=audit.cli_actor(), reason=args.reason)
    if site.cost_per_hour is None:
        out.write(f"site {site.name}: no cost per hour; pages show hours lost only\n")
    else:
        out.write(f"site {site.name}: an hour of a manager's time costs {site.cost_per_hour:g} {site.currency}; "
                  "the overview shows the hours lost in money too\n")
    return 0


def cmd_process_load(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
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


def cmd_process_discovery(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sites.get_site(client, args.site)
    if args.on and args.off:
        raise CliError("give --on or --off, not both")
    if args.on:
        window = discovery.switch_on(client, args.site, args.days, actor=audit.cli_actor(), reason=args.reason)
    elif args.off:
        discovery.switch_off(client, args.site, actor=audit.cli_actor(), reason=args.reason)
        window = None
    else:
        window = discovery.window(client, args.site)
    found, views = discovery.unmatched(client, processes.latest(client, args.site), args.site)
    if args.json:
        out.write(json.dumps({"site": args.site, "on": window is not None,
                              "until": window.until.isoformat() if window else None, "views": views,
                              "patterns": [{"pattern": d.pattern, "views": d.views, "share": round(d.share, 4),
                                            "first_day": d.first_day.isoformat(), "last_day": d.last_day.isoformat(),
                                            "rule": d.rule, "title": d.title} for d in found]}) + "\n")
        return 0
    if window is None:
        out.write(f"site {args.site}: discovery is off\n")
    else:
        out.write(f"site {args.site}: discovery is on until {window.until:%Y-%m-%d %H:%M} UTC "
                  "(the tracker counts the pages no step matches: path patterns and counts only)\n")
    for d in found:
        out.write(f"{d.views}\t{d.share:.0%}\t{d.first_day}..{d.last_day}\t{d.pattern}\t(rule {d.rule}, "
                  f"title {d.title!r})\n")
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


def register(sub: Any) -> None:
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
    a = site_sub.add_parser("cost", help="what an hour of a manager's time costs, to show hours lost in money")
    a.add_argument("name")
    a.add_argument("--per-hour", type=float, metavar="AMOUNT", help="cost of one hour, e.g. 1500")
    a.add_argument("--currency", metavar="CODE", help="ISO 4217 currency code, e.g. EUR, USD, RUB")
    a.add_argument("--clear", action="store_true", help="remove the cost: pages show hours only")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_sites_cost)

    p = sub.add_parser("process", help="load and show a site's process definition (steps and URL rules)")
    process_sub = p.add_subparsers(title="process commands", metavar="ACTION", required=True)
    a = process_sub.add_parser("load", aliases=["import"],
                               help="load a TOML process definition (a new version when it changed)")
    a.add_argument("file")
    a.add_argument("--site", help="the site it belongs to (default: site = ... in the file)")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_process_load)
    a = process_sub.add_parser("show", help="print a site's current process definition as TOML")
    a.add_argument("site")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_process_show)
    a = process_sub.add_parser("discovery", help="switch step discovery on or off for a few days (audited), and "
                                                  "list the most viewed paths no step matches")
    a.add_argument("site")
    a.add_argument("--on", action="store_true", help="switch it on from now for --days")
    a.add_argument("--off", action="store_true", help="switch it off now")
    a.add_argument("--days", type=int, default=discovery.DEFAULT_DAYS,
                   help=f"how long it stays on (1-{discovery.MAX_DAYS}, default {discovery.DEFAULT_DAYS})")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_process_discovery)

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
