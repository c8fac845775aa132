"""Where a benchmark's data lives: the embedded engine (the default), a ClickHouse server, or a cluster.

    --servers 1                  start one server from the installed chdb (tests/chserver.py)
    --servers 2                  start two, the shards of cluster "stepwatch"
    --clickhouse-url URL         a server that runs already
    --clickhouse-url URL --cluster NAME --nodes URL,URL   a cluster that runs already (URL: the node asked)

Servers started here live in their own processes on this machine (the shards share its cores: a
figure shows the overhead of the mode, not a speed-up) and are stopped when the benchmark ends.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

CLUSTER = "stepwatch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the data lives (default: the embedded engine)")
    group.add_argument("--servers", type=int, default=0,
                       help="start N ClickHouse servers from the installed chdb: 1 = one server, 2+ = a cluster")
    group.add_argument("--clickhouse-url", help="a running ClickHouse server (with --cluster: the node to talk to)")
    group.add_argument("--cluster", help="the cluster of --nodes (a name in their remote_servers)")
    group.add_argument("--nodes", help="comma-separated URLs of every node of --cluster")
    group.add_argument("--database", help=argparse.SUPPRESS)  # set by start(): the child process's database


def start(args: argparse.Namespace, work: Path) -> Any:
    """Start the servers --servers asks for (None when it does not), filling in args' URLs, and pick
    a database of its own for this run."""
    servers = None
    if args.servers:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/
        from tests import chserver

        cluster = CLUSTER if args.servers > 1 else None
        servers = chserver.start(work / "clickhouse", args.servers, cluster)
        args.clickhouse_url = servers.urls[-1]
        if cluster:
            args.cluster, args.nodes = cluster, ",".join(servers.urls)
    if args.clickhouse_url and not args.database:
        args.database = f"bench_{uuid.uuid4().hex[:8]}"
    return servers


def mode(args: argparse.Namespace) -> str:
    if args.cluster:
        return f"cluster of {len(args.nodes.split(','))} shards"
    return "one server" if args.clickhouse_url else "embedded"


def settings_values(args: argparse.Namespace) -> dict[str, Any]:
    """Settings(...) values for the store args name (none for the embedded engine)."""
    if not args.clickhouse_url:
        return {}
    values: dict[str, Any] = {"clickhouse_url": f"{args.clickhouse_url.rstrip('/')}/{args.database}"}
    if args.cluster:
        values |= {"clickhouse_cluster": args.cluster, "clickhouse_nodes": args.nodes}
    return values


def child_arguments(args: argparse.Namespace) -> list[str]:
    """The same store for a child process of the benchmark."""
    if not args.clickhouse_url:
        return []
    found = ["--clickhouse-url", args.clickhouse_url, "--database", args.database]
    if args.cluster:
        found += ["--cluster", args.cluster, "--nodes", args.nodes]
    return found
