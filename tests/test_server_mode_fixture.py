"""The helper that runs real ClickHouse servers for the tests (tests/chserver.py): they start, answer,
form a cluster, say why when they cannot start, and never outlive their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import chserver

pytestmark = pytest.mark.xdist_group("chserver")


def ask(url: str, sql: str) -> str:
    with urllib.request.urlopen(url + "/", data=sql.encode(), timeout=10) as response:
        return response.read().decode().strip()


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_server_answers_over_http_and_is_gone_after_stop(tmp_path: Path) -> None:
    servers = chserver.start(tmp_path, 1)
    server = servers.servers[0]
    assert server.proc is not None
    pid = server.proc.pid
    assert ask(servers.url, "SELECT 1 + 1") == "2"
    assert ask(servers.url, "SELECT count() FROM system.clusters WHERE cluster = 'stepwatch'") == "0"
    servers.stop()
    assert gone(pid)
    assert not server.answers()
    servers.stop()  # stopping twice is harmless


def test_two_servers_are_the_shards_of_a_cluster(tmp_path: Path) -> None:
    with chserver.start(tmp_path, 2, cluster="stepwatch") as servers:
        assert servers.urls[0] != servers.urls[1]
        for url in servers.urls:
            assert ask(url, "SELECT count(), uniqExact(shard_num) FROM system.clusters WHERE cluster = 'stepwatch'"
                       ) == "2\t2"
        # a query on one reaches the other
        assert ask(servers.urls[0], "SELECT count() FROM clusterAllReplicas(stepwatch, system.one)") == "2"


def test_a_server_that_cannot_start_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as if chdb-core lost the module its server mode needs
    monkeypatch.setattr(chserver, "_SERVE", chserver._SERVE.replace("from chdb import _chdb", "from chdb import _gone"))
    with pytest.raises(chserver.ServerFailed, match="has no server mode"):
        chserver.start(tmp_path, 2, cluster="stepwatch", timeout_s=20)


def test_servers_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tests import chserver; "
         "s = chserver.start(Path(sys.argv[1])); print(s.servers[0].proc.pid, flush=True); time.sleep(600)",
         str(tmp_path)],
        stdout=subprocess.PIPE, cwd=chserver.Path(__file__).resolve().parent.parent, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert not gone(pid, 0.2)
    parent.send_signal(signal.SIGKILL)  # no atexit, no finalizer: the kernel stops the server
    parent.wait()
    parent.stdout.close()
    assert gone(pid)
