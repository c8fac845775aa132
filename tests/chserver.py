"""Real ClickHouse servers for the tests and benchmarks, from the engine already installed (chdb).

chdb's low-level `_chdb.query(sql, format, path=DATA_DIR)` runs a whole clickhouse-local, which reads
`config.xml` from the current directory (listen_host, http_port, tcp_port, remote_servers) and whose
listeners (`SYSTEM START LISTEN HTTP` / `TCP`) live as long as that call runs. So a server here is one
process with its own working directory and config.xml, running those two statements followed by one
that blocks; it is stopped with SIGTERM to its process group, then SIGKILL.

`_chdb.query` is not a public API: pyproject.toml pins chdb-core to the range this was tested with,
and `start` fails with the reason (`ServerFailed`) when a server does not come up. There is no
authentication, so servers listen on 127.0.0.1 only. They never outlive the process that started
them: their own process group, stopped by `Servers.stop` (the fixtures' finalizers), by atexit, and
by the kernel (PR_SET_PDEATHSIG) if the parent dies without either.

    servers = start(tmp_path, count=2, cluster="stepwatch")   # two shards of cluster "stepwatch"
    servers.urls   -> ["http://127.0.0.1:PORT", ...]
    servers.stop()
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable
START_TIMEOUT_S = 60.0

# What a server process runs: listen, then block until it is signalled.
_SERVE = """
import sys
try:
    from chdb import _chdb
except Exception as exc:
    sys.exit(f"chdb's _chdb module is missing ({exc}): the installed chdb-core has no server mode")
try:
    _chdb.query(
        "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
        "SELECT sleepEachRow(1) FROM numbers(1000000000) FORMAT Null "
        "SETTINGS max_block_size = 1, function_sleep_max_microseconds_per_block = 0, max_execution_time = 0",
        "TabSeparated", path=sys.argv[1])
except Exception as exc:
    sys.exit(f"chdb's _chdb.query did not run a server: {exc}")
sys.exit("chdb's _chdb.query returned: its listeners are gone")
"""

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class ServerFailed(RuntimeError):
    """A server did not start (the reason is in the message, with the end of its log)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    workdir: Path
    http_port: int
    tcp_port: int
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""  # a server this helper did not start (external)

    @property
    def url(self) -> str:
        return self.address or f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        try:
            return (self.workdir / "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as response:
                return response.read().strip() == b"Ok."
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class Servers:
    """One server, or the nodes of a cluster (one shard each) named `cluster`."""

    servers: list[Server]
    cluster: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            for server in self.servers:
                server.stop()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def external(urls: list[str], cluster: str | None = None) -> Servers:
    """Servers started elsewhere (e.g. the official clickhouse/clickhouse-server image in CI), used as
    `start`'s are; stopping them does nothing."""
    return Servers([Server(f"node{n + 1}", Path("."), 0, 0, address=url.rstrip("/")) for n, url in enumerate(urls)],
                   cluster)


def from_environment(base: Path, count: int, cluster: str | None) -> Servers:
    """The servers of STEPWATCH_TEST_CLICKHOUSE_URL (one) or STEPWATCH_TEST_CLICKHOUSE_NODES (a cluster named
    STEPWATCH_TEST_CLICKHOUSE_CLUSTER, default `cluster`) when set, else `start`ed from the installed chdb."""
    if cluster is None and os.environ.get("STEPWATCH_TEST_CLICKHOUSE_URL"):
        return external([os.environ["STEPWATCH_TEST_CLICKHOUSE_URL"]])
    if cluster is not None and os.environ.get("STEPWATCH_TEST_CLICKHOUSE_NODES"):
        urls = [u.strip() for u in os.environ["STEPWATCH_TEST_CLICKHOUSE_NODES"].split(",") if u.strip()]
        return external(urls, os.environ.get("STEPWATCH_TEST_CLICKHOUSE_CLUSTER", cluster))
    return start(base, count, cluster)


def config_xml(server: Server, cluster: str | None, nodes: list[Server]) -> str:
    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{node.tcp_port}</port></replica></shard>" for node in nodes)
    remote = f"<remote_servers><{cluster}>{shards}</{cluster}></remote_servers>" if cluster else ""
    return (f"<clickhouse><listen_host>127.0.0.1</listen_host><http_port>{server.http_port}</http_port>"
            f"<tcp_port>{server.tcp_port}</tcp_port><logger><level>warning</level><console>1</console></logger>"
            f"{remote}</clickhouse>\n")


def start(base: Path, count: int = 1, cluster: str | None = None, timeout_s: float = START_TIMEOUT_S) -> Servers:
    """Start `count` servers under `base` (a directory each), wait until each answers, and return them.

    With `cluster`, each server's config names all of them as the shards of that cluster.
    Raises ServerFailed with the reason when one does not come up (and stops the others).
    """
    for attempt in range(3):
        try:
            return _start(base / f"try{attempt}" if attempt else base, count, cluster, timeout_s)
        except ServerFailed as exc:
            # a free port taken by another process between our look and the server's bind: new ports
            if "already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start(base: Path, count: int, cluster: str | None, timeout_s: float) -> Servers:
    base.mkdir(parents=True, exist_ok=True)
    nodes = [Server(f"node{n + 1}", base / f"node{n + 1}", free_port(), free_port()) for n in range(count)]
    servers = Servers(nodes, cluster)
    atexit.register(servers.stop)
    try:
        for node in nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            (node.workdir / "config.xml").write_text(config_xml(node, cluster, nodes))
            with open(node.workdir / "server.log", "wb") as log:
                node.proc = subprocess.Popen(
                    [PYTHON, "-c", _SERVE, str(node.workdir / "data")], cwd=node.workdir, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            while not node.answers():
                assert node.proc is not None
                if node.proc.poll() is not None:
                    raise ServerFailed(f"ClickHouse server {node.name} (chdb's _chdb.query in {node.workdir}) exited "
                                       f"with {node.proc.returncode} before answering:\n{node.log()}")
                if time.monotonic() > deadline:
                    raise ServerFailed(f"ClickHouse server {node.name} did not answer on {node.url}/ping within "
                                       f"{timeout_s:.0f} s:\n{node.log()}")
                time.sleep(0.1)
    except BaseException:
        servers.stop()
        raise
    return servers


if __name__ == "__main__":  # for a person: python -m tests.chserver DIR [COUNT] [CLUSTER]
    running = start(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1,
                    sys.argv[3] if len(sys.argv) > 3 else None)
    print(" ".join(running.urls), flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        running.stop()
