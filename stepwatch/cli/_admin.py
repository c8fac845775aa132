"""`stepwatch migrate` and `stepwatch sql`: looking after and looking into the store."""

from __future__ import annotations

import argparse
import json
import re
from typing import IO, Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from stepwatch import migrations
from stepwatch.cli._common import (
    CliError,
    _first_line,
    _json_default,
    _tsv,
)


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


# A per-query readonly setting would be cleaner, but on the chdb backend it sticks to the
# connection (clickhouse-connect applies it with SET and cannot undo it in readonly mode).
READ_QUERY = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations and list them")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("sql", help="run a read-only query and print the rows")
    p.add_argument("query")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv")
    p.set_defaults(func=cmd_sql)
