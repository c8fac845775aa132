"""Accounts and API tokens: Argon2id passwords, roles checked, every change audited, secrets never logged."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import argon2
import pytest

from kernel import audit, storage, users
from kernel.errors import Conflict, InvalidInput, NotFound
from stepwatch.cli import build_parser
from tests.conftest import PRODUCT_HASHER
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


@pytest.mark.slow
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
    # The product hashes with argon2-cffi's recommended parameters (this process's tests use the
    # library's cheapest profile, see conftest.py; a process of its own does not).
    code, out, err = run_cli("sql", "SELECT password_hash FROM users FINAL WHERE name = 'max'", "--format", "json",
                             env=env)
    assert code == 0, err
    stored = json.loads(out)[0]["password_hash"]
    product = argon2.profiles.RFC_9106_LOW_MEMORY
    assert argon2.extract_parameters(stored) == product
    assert (PRODUCT_HASHER.time_cost, PRODUCT_HASHER.memory_cost) == (product.time_cost, product.memory_cost)


def cli(client: storage.Client, *argv: str) -> str:
    """Run a `stepwatch` command in this process on the test's database (as `serve` runs a forwarded one)."""
    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    assert args.func(args, client, out) == 0
    return out.getvalue()


def test_tokens_list_shows_when_each_was_last_used_and_never_the_token(client: storage.Client) -> None:
    users.add_user(client, "ann", "admin", "long enough pw", actor="root")
    users.add_user(client, "max", "manager", "long enough pw", manager_id="manager-42", actor="root")
    used = users.create_token(client, "ann", "nightly export", actor="root")
    unused = users.create_token(client, "max", "lms sync", actor="root")
    assert users.user_for_token(client, used) is not None
    listed = json.loads(cli(client, "tokens", "list", "--json"))
    assert [(t["name"], t["user"], t["revoked"]) for t in listed] == [("nightly export", "ann", False),
                                                                     ("lms sync", "max", False)]
    assert listed[0]["last_used"] is not None and listed[1]["last_used"] is None
    assert all(t["created"] for t in listed)
    table = cli(client, "tokens", "list")
    assert "last used" in table and "never" in table and " UTC" in table
    assert used not in table and unused not in table
    assert users.list_tokens(client, "ann")[0].token_hash not in table  # the id is a short prefix only
    assert [t["user"] for t in json.loads(cli(client, "tokens", "list", "max", "--json"))] == ["max"]
    with pytest.raises(NotFound):
        cli(client, "tokens", "list", "ghost")


def test_tokens_revoke_by_name_or_id(client: storage.Client) -> None:
    users.add_user(client, "ann", "admin", "long enough pw", actor="root")
    users.add_user(client, "max", "manager", "long enough pw", manager_id="manager-42", actor="root")
    first = users.create_token(client, "ann", "script", actor="root")
    second = users.create_token(client, "max", "script", actor="root")
    with pytest.raises(Conflict, match="several tokens"):  # the name is ambiguous: the id is asked for
        cli(client, "tokens", "revoke", "script")
    max_token = users.list_tokens(client, "max")[0]
    assert "revoked" in cli(client, "tokens", "revoke", max_token.id, "--reason", "laptop stolen")
    assert users.user_for_token(client, second) is None
    assert users.user_for_token(client, first) is not None
    cli(client, "tokens", "revoke", "script")  # now only one active token has the name
    assert users.user_for_token(client, first) is None
    assert [t.revoked for t in users.list_tokens(client)] == [True, True]
    entries = audit.entries(client, action="token.revoke")
    assert {(e.object, e.details["name"]) for e in entries} == {("ann", "script"), ("max", "script")}
    assert "laptop stolen" in {e.reason for e in entries}
    with pytest.raises(NotFound):
        cli(client, "tokens", "revoke", "nothing-like-it")


def test_users_disable_and_enable(client: storage.Client) -> None:
    users.add_user(client, "max", "manager", "long enough pw", manager_id="manager-42", actor="root")
    token = users.create_token(client, "max", "script", actor="root")
    session = users.start_session(client, "max")
    assert users.session_user(client, "max", session) is not None
    out = cli(client, "users", "disable", "max", "--reason", "left")
    assert "1 login(s) ended, 1 token(s) revoked" in out
    assert users.get_user(client, "max").disabled
    assert users.session_user(client, "max", session) is None
    assert users.user_for_token(client, token) is None
    assert users.check_password(client, "max", "long enough pw") is None
    cli(client, "users", "enable", "max")
    assert users.check_password(client, "max", "long enough pw") is not None
    assert users.session_user(client, "max", session) is None  # what disabling ended stays ended
    assert users.user_for_token(client, token) is None
    assert [(e.action, e.actor.startswith("cli:")) for e in audit.entries(client, obj="max", action="user.")][:2] \
        == [("user.enable", True), ("user.disable", True)]
    with pytest.raises(NotFound):
        cli(client, "users", "disable", "ghost")


def test_a_session_ends_at_logout_and_only_that_one(client: storage.Client) -> None:
    users.add_user(client, "ann", "admin", "long enough pw", actor="root")
    laptop, phone = users.start_session(client, "ann"), users.start_session(client, "ann")
    users.end_session(client, laptop)
    assert users.session_user(client, "ann", laptop) is None
    assert users.session_user(client, "ann", phone) is not None
    assert users.session_user(client, "ann", "made-up-id") is None
    assert users.end_sessions(client, "ann") == 1


@pytest.mark.parametrize("token", ["", "swt_", "é", "swt_é" * 10, "swt_" + "a" * 500, "swt_\udce9" * 8,
                                   "Bearer swt_" + "a" * 40])
def test_a_token_that_cannot_be_one_is_refused_without_a_lookup(client: storage.Client, token: str) -> None:
    assert not users.token_shaped(token)
    assert users.user_for_token(client, token) is None
