"""Accounts and API tokens: Argon2id passwords, roles checked, every change audited, secrets never logged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stepwatch import storage, users
from stepwatch.errors import Conflict, InvalidInput, NotFound
from tests.helpers import run_cli


def test_accounts_with_hashed_passwords(client: storage.Client) -> None:
    users.add_user(client, "dana", "director", "correct horse battery", teams=("north",), actor="root")
    stored = users.get_user(client, "dana")
    assert stored.password_hash.startswith("$argon2id$") and "correct horse" not in stored.password_hash
    assert users.check_password(client, "dana", "correct horse battery") == stored
    assert users.check_password(client, "dana", "wrong password!") is None
    assert users.check_password(client, "nobody", "correct horse battery") is None
    users.set_password(client, "dana", "another long secret", actor="root")
    assert users.check_password(client, "dana", "correct horse battery") is None
    assert users.check_password(client, "dana", "another long secret") is not None
    audit = storage.query_rows(client, "SELECT action, details FROM audit_log WHERE object = 'dana' ORDER BY at")
    assert [a["action"] for a in audit] == ["user.add", "user.passwd"]
    assert "secret" not in json.dumps(audit) and "horse" not in json.dumps(audit)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"name": "bad name", "role": "admin"}, InvalidInput),
    ({"name": "x", "role": "emperor"}, InvalidInput),
    ({"name": "m", "role": "manager"}, InvalidInput),  # a manager account needs the tracker's id
    ({"name": "short", "role": "admin", "password": "short"}, InvalidInput),
])
def test_refusals(client: storage.Client, kwargs: dict[str, str], error: type) -> None:
    with pytest.raises(error):
        users.add_user(client, kwargs["name"], kwargs["role"], kwargs.get("password", "long enough pw"), actor="t")


def test_names_are_unique_and_tokens_work_until_revoked(client: storage.Client) -> None:
    users.add_user(client, "max", "manager", "long enough pw", manager_id="manager-42", actor="root")
    with pytest.raises(Conflict):
        users.add_user(client, "max", "admin", "long enough pw", actor="root")
    token = users.create_token(client, "max", "lms sync", actor="root")
    assert users.user_for_token(client, token).name == "max"  # type: ignore[union-attr]
    assert users.user_for_token(client, token + "x") is None
    stored = storage.query_rows(client, "SELECT token_hash FROM api_tokens")
    assert token not in json.dumps(stored)
    with pytest.raises(NotFound):
        users.create_token(client, "ghost", "x", actor="root")


def test_users_cli(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}
    code, out, err = run_cli("users", "add", "ann", "--role", "admin", env=env)
    assert code == 0, err
    assert "password:" in out
    proc = subprocess.run([sys.executable, "-m", "stepwatch", "users", "add", "max", "--role", "manager",
                           "--manager-id", "manager-42", "--password-stdin"], input="typed long password\n",
                          capture_output=True, text=True, env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stderr
    assert "password:" not in proc.stdout
    code, out, _ = run_cli("users", "list", "--json", env=env)
    assert [(u["name"], u["role"], u["manager_id"]) for u in json.loads(out)] == [
        ("ann", "admin", ""), ("max", "manager", "manager-42")]
    code, _, err = run_cli("users", "add", "zed", "--role", "manager", env=env)
    assert code == 1 and "--manager-id" in err
    code, out, err = run_cli("tokens", "add", "max", "--name", "script", env=env)
    assert code == 0 and "swt_" in out, err
