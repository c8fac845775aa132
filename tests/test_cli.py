"""The `stepwatch` command in subprocesses: sites, sql, migrate, and the one-process engine lock."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli, serve


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}


@pytest.mark.slow
def test_sites_add_list_disable_are_audited(env: dict[str, str]) -> None:
    code, out, err = run_cli("sites", "add", "crm", "--origin", "https://crm.example.com/", "--json", env=env)
    assert code == 0, err
    created = json.loads(out)
    assert created["key"].startswith("pk_") and created["secret"].startswith("sk_")
    assert created["origins"] == ["https://crm.example.com"]

    code, out, _ = run_cli("sites", "add", "crm", "--origin", "https://x.example.com", env=env)
    assert code == 1  # a clear refusal, not a traceback
    code, out, err = run_cli("sites", "add", "crm2", "--origin", "not a url", env=env)
    assert code == 1 and "origin" in err and "Traceback" not in err

    code, out, err = run_cli("sites", "disable", "crm", "--reason", "pilot over", env=env)
    assert code == 0, err
    code, out, _ = run_cli("sites", "list", "--json", env=env)
    assert [(s["name"], s["enabled"]) for s in json.loads(out)] == [("crm", False)]
    code, out, _ = run_cli("sql", "SELECT action, object, reason FROM audit_log ORDER BY at", "--format", "json",
                           env=env)
    assert json.loads(out) == [
        {"action": "site.add", "object": "crm", "reason": ""},
        {"action": "site.disable", "object": "crm", "reason": "pilot over"},
    ]
    code, _, err = run_cli("sites", "disable", "nope", env=env)
    assert code == 1 and "no site named" in err


@pytest.mark.slow
def test_sql_prints_tsv_and_json_and_refuses_writes(env: dict[str, str]) -> None:
    code, out, err = run_cli("sql", "SELECT 1 AS one, 'a\tb' AS text", env=env)
    assert code == 0, err
    assert out == "one\ttext\n1\ta\\tb\n"
    code, out, _ = run_cli("sql", "SELECT number AS n FROM numbers(3)", "--format", "json", env=env)
    assert json.loads(out) == [{"n": 0}, {"n": 1}, {"n": 2}]
    code, _, err = run_cli("sql", "DROP TABLE sites", env=env)
    assert code == 1 and "read queries only" in err
    code, _, err = run_cli("sql", "SELECT FROM WHERE", env=env)
    assert code == 1 and "ClickHouse refused the query" in err and "Traceback" not in err


def test_migrate_lists_every_migration_as_applied(env: dict[str, str]) -> None:
    code, out, err = run_cli("migrate", env=env)
    assert code == 0, err
    assert "0001_step_visits: applied" in out and "pending" not in out


def test_bad_setting_is_a_clear_error(env: dict[str, str]) -> None:
    code, _, err = run_cli("sql", "SELECT 1", env={**env, "STEPWATCH_PORT": "eighty"})
    assert code == 2
    assert "STEPWATCH_PORT" in err and "Traceback" not in err


@pytest.mark.slow
def test_commands_go_through_a_running_server(env: dict[str, str], tmp_path: Path) -> None:
    run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)
    with serve(env, tmp_path) as server:
        code, out, err = run_cli("sites", "list", env=env)
        assert code == 0, err
        assert "crm" in out
        code, out, err = run_cli("sites", "add", "second", "--origin", "https://b.example.com", "--json", env=env)
        assert code == 0, err
        code, out, _ = run_cli("sql", "SELECT name FROM sites FINAL ORDER BY name", "--format", "json", env=env)
        assert json.loads(out) == [{"name": "crm"}, {"name": "second"}]
        code, _, err = run_cli("sql", "SELECT nope", env=env)
        assert code == 1 and "ClickHouse refused" in err

        code, _, err = run_cli("serve", env=env)
        assert code == 2
        assert f"process {server.proc.pid}" in err and server.url in err
    assert not (Path(env["STEPWATCH_DATA_DIR"]) / "serve.json").exists()


@pytest.mark.slow
def test_engine_held_by_another_process_is_named(env: dict[str, str]) -> None:
    data = Path(env["STEPWATCH_DATA_DIR"])
    data.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import clickhouse_connect, sys, time; c = clickhouse_connect.get_client(dsn='chdb://{data}'); "
         "print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        code, _, err = run_cli("sql", "SELECT 1", env=env)
        assert code == 2
        assert f"in use by process {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.communicate()
    time.sleep(0.2)
    assert run_cli("sql", "SELECT 1", env=env)[0] == 0


def test_a_retention_beyond_clickhouse_datetime_is_refused(env: dict[str, str]) -> None:
    code, _, err = run_cli("sql", "SELECT 1", env={**env, "STEPWATCH_RETENTION_DAYS": "36500"})
    assert code == 2 and "STEPWATCH_RETENTION_DAYS" in err
