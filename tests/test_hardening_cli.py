"""The operator's tools: `stepwatch sql` only reads, and the files at rest are the owner's only.

`stepwatch sql` is checked on the command (a process of its own), inside a running `serve` (the
forwarding endpoint), and through the runner the endpoint calls, with the real engine each time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.cli import run_in_server
from tests.helpers import http, run_cli, serve


@pytest.fixture
def store(settings: Settings, client: storage.Client) -> Iterator[storage.Store]:
    """The server's store, as the forwarding endpoint hands it to the command (migrated by `client`)."""
    sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")  # one audited change
    s = storage.Store(settings)
    yield s
    s.close()


def _count(client: storage.Client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


# One refusal per way out of read-only: (query, what the message says).
REFUSALS = {
    # the engine runs every statement of a text; the last one takes the FORMAT the client appends
    "two statements": ("SELECT 1; DROP TABLE sites; SELECT 1", "one statement at a time"),
    "statement after a comment": ("SELECT 1 -- first\n; DELETE FROM audit_log WHERE 1; SELECT 1",
                                  "one statement at a time"),
    "insert after a select": ("SELECT 1; INSERT INTO audit_log (action, object) VALUES ('forged', 'x'); SELECT 1",
                              "one statement at a time"),
    "create after a select": ("SELECT 1;CREATE TABLE stolen (line String) ENGINE = Memory;SELECT 1",
                              "one statement at a time"),
    "delete from audit_log after a select": ("SELECT ';'; DELETE FROM audit_log WHERE 1; SELECT 1",
                                             "one statement at a time"),
    "insert": ("INSERT INTO audit_log (action, object) VALUES ('forged', 'x')", "read queries only"),
    "create": ("CREATE TABLE stolen (line String) ENGINE = Memory", "read queries only"),
    "delete from audit_log": ("DELETE FROM audit_log WHERE 1", "read queries only"),
    "alter": ("ALTER TABLE audit_log DELETE WHERE 1", "read queries only"),
    "into outfile": ("SELECT secret FROM sites INTO OUTFILE '{tmp}/out.txt'", "writes no files"),
    "file table function": ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
    "file function": ("SELECT file('/etc/passwd')", "cannot use file()"),
    "file after IN": ("SELECT 'root' IN file('/etc/passwd', 'LineAsString')", "cannot use file()"),
    "file in describe": ("DESCRIBE TABLE file('/etc/passwd', 'LineAsString')", "cannot use file()"),
    # the embedded engine's default database reads a file named as a table: readonly mode stops it
    "file as a table of the default database": ("SELECT * FROM default.`/etc/passwd`", "readonly mode"),
    "url": ("SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')", "table function url()"),
    "url in a subquery": ("SELECT count() FROM (SELECT * FROM URL('http://127.0.0.1:9/x', 'LineAsString'))",
                          "table function URL()"),
    "s3": ("SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv')", "table function s3()"),
    "remote": ("SELECT * FROM remote('127.0.0.1:9', system.one)", "table function remote()"),
    "hdfs in a WITH": ("WITH x AS (SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', 'CSV')) SELECT * FROM x",
                       "table function hdfs()"),
    "mysql in a join": ("SELECT * FROM sites JOIN mysql('127.0.0.1:9', 'd', 't', 'u', 'p') AS m ON 1",
                        "table function mysql()"),
    "python objects": ("SELECT * FROM python(settings)", "table function python()"),
    "settings clause": ("SELECT 1 SETTINGS readonly = 0", "cannot change settings (readonly)"),
    "settings in a subquery": ("SELECT * FROM (SELECT secret FROM sites SETTINGS readonly = 0)",
                               "cannot change settings (readonly)"),
    "set": ("SET readonly = 0", "read queries only"),
    "explain of an insert": ("EXPLAIN INSERT INTO sites SELECT * FROM sites", "explains queries only"),
    "format clause": ("SELECT 1 FORMAT CSV", "chooses the output format"),
}


@pytest.mark.parametrize("query,message", list(REFUSALS.values()), ids=list(REFUSALS))
def test_sql_refuses_what_is_not_one_read(store: storage.Store, client: storage.Client, tmp_path: Path,
                                          query: str, message: str) -> None:
    audited = _count(client, "SELECT count() FROM audit_log")
    code, out, err = run_in_server(["sql", query.format(tmp=tmp_path)], store)
    assert (code, out) == (1, ""), err
    assert message in err and "Traceback" not in err
    assert _count(client, "SELECT count() FROM audit_log") == audited
    assert _count(client, "SELECT count() FROM sites FINAL") == 1
    assert _count(client, "EXISTS TABLE stolen") == 0
    assert not (tmp_path / "out.txt").exists()
    # readonly did not stay on the server's own connection: the server still writes
    store.call(sites.add_site, f"after_{uuid.uuid4().hex[:6]}", ["https://b.example.com"], actor="test")


def test_sql_still_reads_what_looks_like_a_refusal(store: storage.Store) -> None:
    cases = {
        "SELECT ';' AS a, 'file(''/etc/passwd'')' AS b -- ; DROP TABLE sites\n": "a\tb\n;\tfile('/etc/passwd')\n",
        "SELECT $$x; INTO OUTFILE 'y'$$ AS c /* ; SETTINGS readonly = 0 */": "c\nx; INTO OUTFILE 'y'\n",
        "SELECT count() AS n FROM numbers(3);": "n\n3\n",
        "SELECT name FROM sites FINAL WHERE name = 'crm' AND 'url(x)' != ''": "name\ncrm\n",
        "SELECT value FROM system.settings WHERE name = 'readonly'": "value\n1\n",
        "SELECT format('{}-{}', 'a', 'b') AS f": "f\na-b\n",
        "EXISTS TABLE sites": "result\n1\n",
    }
    for query, expected in cases.items():
        code, out, err = run_in_server(["sql", query], store)
        assert (code, out) == (0, expected), (query, err)
    for query in ("SHOW TABLES", "DESCRIBE TABLE sites", "SHOW CREATE TABLE sites", "EXPLAIN SELECT * FROM sites",
                  "WITH 2 AS two SELECT two * number FROM numbers(2)", "SELECT 1 UNION ALL SELECT 2"):
        code, out, err = run_in_server(["sql", query], store)
        assert code == 0 and out, (query, err)
    store.call(sites.add_site, "still_writes", ["https://b.example.com"], actor="test")


@pytest.mark.slow
def test_sql_command_refuses_in_a_process_of_its_own(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}
    code, out, err = run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", "--json", env=env)
    assert code == 0, err
    secret = json.loads(out)["secret"]
    for query, message in [
        ("SELECT 1; DROP TABLE sites; SELECT 1", "one statement at a time"),
        (f"SELECT secret FROM sites INTO OUTFILE '{tmp_path}/out.txt'", "writes no files"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
        ("INSERT INTO audit_log (action) VALUES ('forged')", "read queries only"),
    ]:
        code, out, err = run_cli("sql", query, env=env)
        assert code == 1 and message in err and "Traceback" not in err, (query, err)
        assert "root:" not in out + err
    assert not (tmp_path / "out.txt").exists()
    code, out, err = run_cli("sql", "SELECT secret FROM sites FINAL", "--format", "json", env=env)
    assert code == 0 and json.loads(out) == [{"secret": secret}], err
    code, out, _ = run_cli("sql", "SELECT action FROM audit_log", env=env)
    assert out == "action\nsite.add\n"


@pytest.mark.slow
def test_sql_through_a_running_server_refuses_too(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}
    run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)
    with serve(env, tmp_path) as server:
        for query, message in [
            ("DELETE FROM audit_log WHERE 1", "read queries only"),
            ("SELECT 1; DELETE FROM audit_log WHERE 1; SELECT 1", "one statement at a time"),
            ("SELECT file('/etc/passwd')", "cannot use file()"),
            ("SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')", "table function url()"),
            ("SELECT 1 SETTINGS readonly = 0", "cannot change settings"),
            (f"SELECT 1 INTO OUTFILE '{tmp_path}/out.txt'", "writes no files"),
        ]:
            code, out, err = run_cli("sql", query, env=env)
            assert code == 1 and message in err and "Traceback" not in err, (query, err)
        # the same refusal straight from the endpoint, as any local process holding the token would ask
        info = storage.read_serve_info(tmp_path / "data")
        assert info is not None and info.pid == server.proc.pid
        status, answer = http("POST", server.url + "/v1/admin/cli", {"argv": ["sql", "DELETE FROM audit_log WHERE 1"]},
                              {"Authorization": f"Bearer {info.token}"})
        assert status == 200 and answer["exit_code"] == 1 and "read queries only" in answer["errors"]
        # nothing stuck to the server's connection: it still writes
        code, _, err = run_cli("sites", "add", "second", "--origin", "https://b.example.com", env=env)
        assert code == 0, err
        code, out, _ = run_cli("sql", "SELECT action FROM audit_log ORDER BY at", env=env)
        assert out == "action\nsite.add\nsite.add\n"
    assert not (tmp_path / "out.txt").exists()


# -- files at rest --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_nobody(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["cat", str(path)], user="nobody", group="nogroup", capture_output=True, timeout=30)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory every local user may enter (pytest's own tmp_path is its owner's only)."""
    parent = Path(tempfile.mkdtemp(prefix="stepwatch-at-rest-", dir="/tmp"))
    parent.chmod(0o755)
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another user needs root to switch to it")
def test_another_local_user_cannot_read_a_site_secret(open_parent: Path) -> None:
    data = open_parent / "data"
    env = {"STEPWATCH_DATA_DIR": str(data)}
    code, out, err = run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", "--json", env=env)
    assert code == 0, err
    site = json.loads(out)
    with serve(env, open_parent):
        pass  # the login key and the sites snapshot beside the spool
    # events left in the spool: ClickHouse is unreachable, so they wait there
    down = {**env, "STEPWATCH_CLICKHOUSE_URL": f"http://127.0.0.1:{_free_port()}/stepwatch",
            "STEPWATCH_SPOOL_RETRY_S": "3600"}
    now = int(time.time() * 1000)
    visit = {"type": "visit", "visit_id": str(uuid.uuid4()), "seq": 0, "final": True, "manager": "m-1",
             "session_id": "s-1", "process": "sales", "step": "offer", "started_at": now - 60_000,
             "active_ms": 1000, "idle_ms": 0, "hidden_ms": 0}
    with serve(down, open_parent) as collector:
        status, body = http("POST", collector.url + "/v1/events", {"site": site["key"], "events": [visit]},
                            {"Content-Type": "text/plain"})
        assert status == 200, body
        collector.proc.send_signal(signal.SIGKILL)
        collector.proc.wait()

    holding_secret = [p for p in data.rglob("*") if p.is_file() and site["secret"].encode() in p.read_bytes()]
    spooled = list((data / "spool").glob("spool-*.log"))
    assert holding_secret and spooled and (data / "secret_key").exists()

    control = open_parent / "control.txt"
    control.write_text("anyone may read this\n")
    control.chmod(0o644)
    assert _as_nobody(control).returncode == 0  # nobody can reach the parent: the refusals below are the modes
    for path in [*holding_secret, data / "secret_key", *spooled]:
        refused = _as_nobody(path)
        assert refused.returncode != 0 and b"Permission denied" in refused.stderr, path
        assert site["secret"].encode() not in refused.stdout

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    wide = [f"{p} {stat.S_IMODE(p.lstat().st_mode):o}" for p in [data, *data.rglob("*")]
            if not p.is_symlink() and p.lstat().st_mode & 0o077]
    assert wide == []


def test_a_data_directory_open_to_others_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    code, _, err = run_cli("sql", "SELECT 1", env={"STEPWATCH_DATA_DIR": str(data)})
    assert code == 0, err
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert "open to other users (mode 755)" in err
    code, _, err = run_cli("sql", "SELECT 1", env={"STEPWATCH_DATA_DIR": str(data)})
    assert code == 0 and "open to other users" not in err
