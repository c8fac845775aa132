"""`stepwatch import` and `stepwatch export`: event logs in and out."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from stepwatch.cli._common import (
    CliError,
    _parse_date,
    parse_duration,
)


def cmd_import(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from pathlib import Path

    from stepwatch import eventlog

    mapping = eventlog.read_mapping_file(Path(args.mapping)) if args.mapping else eventlog.CsvMapping()
    attributes = []
    for given in args.attribute or []:
        name, sep, column = given.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise CliError(f"--attribute takes NAME=COLUMN, e.g. --attribute segment=Segment, not {given!r}")
        attributes.append((name.strip(), column.strip()))
    mapping = mapping.merged(eventlog.CsvMapping(
        case=args.case, activity=args.activity, resource=args.resource, start=args.start, end=args.end,
        timestamp=args.timestamp, lifecycle=args.lifecycle, timestamp_format=args.timestamp_format,
        delimiter=args.delimiter or "", attributes=tuple(attributes)))
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
    write = {"xes": eventlog.export_xes, "csv": eventlog.export_csv, "ocel": eventlog.export_ocel}[args.format]
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


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="import an event log (CSV or XES, gzip or not) as step visits")
    p.add_argument("file")
    p.add_argument("--site", required=True)
    p.add_argument("--format", choices=["csv", "xes"], help="default: from the file name")
    p.add_argument("--mapping", metavar="FILE", help="CSV columns as TOML or JSON (keys as the options below)")
    for column in ("case", "activity", "resource", "start", "end", "timestamp", "lifecycle"):
        p.add_argument(f"--{column}", metavar="COLUMN", help=f"CSV column of the {column}")
    p.add_argument("--timestamp-format", help="strptime format, or unix / unix_ms (default: ISO 8601)")
    p.add_argument("--delimiter", help="CSV delimiter (default ,)")
    p.add_argument("--attribute", action="append", metavar="NAME=COLUMN",
                   help="CSV column of a session attribute the process declares (repeatable; by default a column "
                        "named NAME or case:NAME); XES: the trace attribute NAME")
    p.add_argument("--timing", choices=["auto", "pairs", "gaps"], default="auto",
                   help="pairs: start/complete events; gaps: time since the resource's previous event in the case")
    p.add_argument("--max-gap", default="4h", help="gaps: longest gap taken as work (default 4h)")
    p.add_argument("--strict", action="store_true", help="refuse rows of steps the site's process does not have")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export step visits as an event log (CSV, XES or OCEL 2.0 JSON) for "
                                      "process-mining tools")
    p.add_argument("file", help="output file (.gz: compressed; - : standard output)")
    p.add_argument("--site", required=True)
    p.add_argument("--format", choices=["csv", "xes", "ocel"], required=True,
                   help="ocel: OCEL 2.0 JSON, with managers, customers and service sessions as objects")
    p.add_argument("--since", help="first day, YYYY-MM-DD")
    p.add_argument("--until", help="last day, YYYY-MM-DD (included)")
    p.set_defaults(func=cmd_export)
