"""`stepwatch migrate` and `stepwatch sql`: looking after and looking into the store."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from kernel import migrations
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
    statement = read_only_statement(client, args.query)
    try:
        result = client.query(statement, settings=READ_ONLY)
    except ClickHouseError as exc:
        raise CliError(f"ClickHouse refused the query: {_reason(exc)}") from None
    names = list(result.column_names)
    if args.format == "json":
        rows = [dict(zip(names, row, strict=True)) for row in result.result_rows]
        out.write(json.dumps(rows, default=_json_default, ensure_ascii=False) + "\n")
    else:
        out.write("\t".join(names) + "\n")
        for row in result.result_rows:
            out.write("\t".join(_tsv(v) for v in row) + "\n")
    return 0


# `stepwatch sql` reads and does nothing else, also inside `serve` (forwarded commands run on the
# server's own connection). ClickHouse's own parser does the checking, with the text bound as a
# parameter: formatQuerySingleLine says it is exactly one statement (no `;` and a second one,
# whatever the quotes and comments) and gives it in canonical form, which is what runs, so the
# statement checked is the statement run. parseQueryToJSON gives its syntax tree, walked for
# what the engine's readonly mode does not stop by itself: INTO OUTFILE (the embedded engine
# writes it from this process), the `file` function (reads any file this process can) and table
# functions (`python` reads this process's objects). The statement then runs with readonly=1,
# which refuses writes, DDL, setting changes and the table functions that reach files or the
# network. readonly=2 would allow setting changes, and with them `file(...)` as a table function.
#
# On the embedded engine readonly=1 rides as a SETTINGS clause of this one SELECT; it does not
# stay on the connection (clickhouse-connect sends an INSERT's settings with SET, which could not
# be undone in readonly mode, but no INSERT gets this far).
READ_ONLY = {"readonly": 1}
READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
# Table functions that only generate rows in the query itself.
SAFE_TABLE_FUNCTIONS = ("numbers", "numbers_mt", "zeros", "zeros_mt", "generateRandom", "generate_series",
                        "generateSeries", "primes", "values")
SAFE = frozenset(name.lower() for name in SAFE_TABLE_FUNCTIONS)
# Refused even where this ClickHouse does not list them in system.table_functions.
OUTSIDE_TABLE_FUNCTIONS = frozenset(
    {"file", "filecluster", "filesystem", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn",
     "azureblobstorage", "azureblobstoragecluster", "hdfs", "hdfscluster", "remote", "remotesecure", "cluster",
     "clusterallreplicas", "mysql", "postgresql", "mongodb", "redis", "sqlite", "jdbc", "odbc", "executable",
     "input", "python", "deltalake", "iceberg", "hudi", "paimon", "dictionary", "merge", "view", "loop"}
)
# Ordinary functions that read files or call out: `file` reads any file the engine can, even in
# readonly mode; the ai* functions call a configured provider.
OUTSIDE_FUNCTIONS = re.compile(r"file|catboostEvaluate|ai[A-Z]\w*")
SELECT_TREES = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ShowTablesQuery")


def read_only_statement(client: Client, text: str) -> str:
    """The statement to run for `stepwatch sql TEXT`, or CliError saying why it may not run."""
    try:
        statement = str(_scalar(client, "SELECT formatQuerySingleLine({text:String})", text))
    except ClickHouseError as exc:
        if "Multi-statements" in str(exc):
            raise CliError("stepwatch sql runs one statement at a time: remove the ';' and what follows it") from None
        raise CliError(f"ClickHouse refused the query: {_reason(exc)}") from None
    kind = re.match(r"\W*(\w*)", statement).group(1).upper()  # type: ignore[union-attr]
    if kind not in READ_STATEMENTS:
        raise CliError(f"stepwatch sql runs read queries only ({', '.join(READ_STATEMENTS)}), "
                       f"not {kind or 'this'} statements")
    refused = _table_functions(client) - SAFE - {"format"}  # format(...) reads its argument
    tree = _syntax_tree(client, statement)
    if tree is not None:
        _check_tree(tree, refused)
    # The words of the statement with its literals blanked out: what the tree cannot show (this
    # ClickHouse has no parseQueryToJSON, or cannot put DESCRIBE, EXISTS or SHOW CREATE in JSON).
    words = str(_scalar(client, "SELECT normalizeQuery({text:String})", statement))
    if re.search(r"(?<![\w.`\"])OUTFILE(?![\w`\"])", words, re.IGNORECASE):
        raise _outfile()
    for name in re.findall(r"(?<![\w.`\"])(\w+)\s*\(", words):
        _check_function(name, refused)
    return statement


def _scalar(client: Client, sql: str, text: str) -> Any:
    return client.query(sql, parameters={"text": text}, settings=READ_ONLY).result_rows[0][0]


def _reason(exc: Exception) -> str:
    # ClickHouse repeats the whole query after "In scope"; the operator has it already.
    return re.split(r":? In scope ", _first_line(exc))[0]


def _table_functions(client: Client) -> set[str]:
    rows = client.query("SELECT name FROM system.table_functions", settings=READ_ONLY).result_rows
    return {str(name).lower() for (name,) in rows} | OUTSIDE_TABLE_FUNCTIONS


def _syntax_tree(client: Client, statement: str) -> dict[str, Any] | None:
    try:
        tree = json.loads(_scalar(client, "SELECT parseQueryToJSON({text:String})", statement))
    except ClickHouseError as exc:
        # ClickHouse before 26.8 has no parseQueryToJSON, and some statements (DESCRIBE, EXISTS,
        # SHOW CREATE) have no JSON form: the word check in read_only_statement covers them.
        if "UNKNOWN_FUNCTION" in str(exc) or "JSON serialization" in str(exc):
            return None
        raise CliError(f"ClickHouse refused the query: {_reason(exc)}") from None
    return tree if isinstance(tree, dict) else None


def _check_tree(tree: dict[str, Any], refused: set[str]) -> None:
    if tree.get("type") == "ExplainQuery" and (tree.get("query") or {}).get("type") not in SELECT_TREES:
        raise CliError("stepwatch sql explains queries only (EXPLAIN SELECT ...)")
    for key, node in _nodes(tree):
        if key == "out_file" or node.get("is_into_outfile_with_stdout"):
            raise _outfile()
        if key == "format_ast":
            raise CliError("stepwatch sql chooses the output format itself: remove FORMAT and use --format tsv|json")
        if node.get("type") == "SetQuery":
            names = ", ".join(str(change.get("name")) for change in node.get("changes") or [])
            raise CliError(f"stepwatch sql runs read-only and cannot change settings ({names}): remove SETTINGS")
        if key == "table_function":
            name = str(node.get("name", ""))
            if name.lower() not in SAFE:
                raise CliError(f"stepwatch sql cannot read from the table function {name}(): it reaches files, "
                               f"the network or other systems (allowed: {', '.join(SAFE_TABLE_FUNCTIONS)})")
        elif node.get("type") == "Function":
            _check_function(str(node.get("name", "")), refused)


def _check_function(name: str, refused: set[str]) -> None:
    if OUTSIDE_FUNCTIONS.fullmatch(name) or name.lower() in refused:
        raise CliError(f"stepwatch sql cannot use {name}(): it reaches files, the network or other systems")


def _outfile() -> CliError:
    return CliError("stepwatch sql writes no files: remove INTO OUTFILE and redirect the output instead")


def _nodes(node: Any, key: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object of a parseQueryToJSON tree, with the key it hangs under."""
    if isinstance(node, dict):
        yield key, node
        for child_key, child in node.items():
            yield from _nodes(child, child_key)
    elif isinstance(node, list):
        for child in node:
            yield from _nodes(child, key)


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations and list them")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("sql", help="run one read-only query and print the rows")
    p.add_argument("query")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv")
    p.set_defaults(func=cmd_sql)
