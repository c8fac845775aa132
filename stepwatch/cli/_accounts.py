"""`stepwatch users` and `stepwatch tokens`: accounts and API tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from kernel import audit, users
from stepwatch.cli._common import (
    CliError,
    _line,
)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): from standard input with --password-stdin, else a new random one."""
    if not args.password_stdin:
        return users.new_password(), True
    if getattr(args, "forwarded", False):
        raise CliError("--password-stdin cannot go through a running serve; omit it to get a generated password")
    return sys.stdin.readline().rstrip("\n"), False


def cmd_users_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    password, generated = _password(args)
    user = users.add_user(client, args.name, args.role, password, teams=tuple(args.team or ()),
                          manager_id=args.manager_id, language=args.language, email=args.email,
                          actor=audit.cli_actor(),
                          reason=args.reason)
    out.write(f"user {user.name} ({user.role}) created\n")
    if generated:
        out.write(f"  password: {password}   (shown once; change it with stepwatch users passwd {user.name})\n")
    return 0


def cmd_users_email(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    user = users.set_email(client, args.name, args.email, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"user {user.name}: digests go to {user.email}\n" if user.email else f"user {user.name}: no e-mail\n")
    return 0


def cmd_users_passwd(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    password, generated = _password(args)
    users.set_password(client, args.name, password, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"password of {args.name} changed\n" + (f"  password: {password}   (shown once)\n" if generated else ""))
    return 0


def cmd_users_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    listed = [{"name": u.name, "role": u.role, "teams": list(u.teams), "manager_id": u.manager_id,
               "language": u.language, "disabled": u.disabled} for u in users.list_users(client)]
    if args.json:
        out.write(json.dumps(listed) + "\n")
        return 0
    out.write(_line("name", "role", "teams", "manager id", "language", "disabled"))
    for u in listed:
        out.write(_line(u["name"], u["role"], " ".join(u["teams"]) or "-", u["manager_id"] or "-", u["language"],
                        "yes" if u["disabled"] else "no"))
    return 0


def cmd_users_disable(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    sessions, tokens = users.disable_user(client, args.name, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"user {args.name} disabled: {sessions} login(s) ended, {tokens} token(s) revoked\n")
    return 0


def cmd_users_enable(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    users.enable_user(client, args.name, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"user {args.name} enabled: they can sign in again (their old tokens stay revoked)\n")
    return 0


def cmd_tokens_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    token = users.create_token(client, args.user, args.name, actor=audit.cli_actor())
    out.write(f"API token {args.name} for {args.user}: {token}\n  (shown once; send it as Authorization: Bearer)\n")
    return 0


def cmd_tokens_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    if args.user:
        users.get_user(client, args.user)  # an unknown name is an error, not an empty list
    listed = [{"id": t.id, "name": t.name, "user": t.user, "created": t.created_at.isoformat(),
               "last_used": t.last_used_at.isoformat() if t.last_used_at else None, "revoked": t.revoked}
              for t in users.list_tokens(client, args.user)]
    if args.json:
        out.write(json.dumps(listed) + "\n")
        return 0
    out.write(_line("id", "name", "user", "created", "last used", "revoked"))
    for t in listed:
        out.write(_line(t["id"], t["name"], t["user"], _when(t["created"]), _when(t["last_used"]) or "never",
                        "yes" if t["revoked"] else "no"))
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    token = users.revoke_token(client, args.token, actor=audit.cli_actor(), reason=args.reason)
    out.write(f"API token {token.name} ({token.id}) of {token.user} revoked\n")
    return 0


def _when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") + " UTC" if iso else ""


def register(sub: Any) -> None:
    p = sub.add_parser("users", help="accounts: admin, director, trainer, manager (passwords hashed with Argon2id)")
    user_sub = p.add_subparsers(title="user commands", metavar="ACTION", required=True)
    a = user_sub.add_parser("add", help="create an account; prints a generated password unless --password-stdin")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["admin", "director", "trainer", "manager"])
    a.add_argument("--team", action="append", help="a director's teams (repeat), or a manager's team")
    a.add_argument("--manager-id", default="", help="a manager account: the id the tracker reports for them")
    a.add_argument("--language", default="en", choices=["en", "ru"])
    a.add_argument("--email", default="", help="where the weekly digest is e-mailed (docs/digests.md)")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_users_add)
    a = user_sub.add_parser("passwd", help="set a new password (generated unless --password-stdin)")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true")
    a.add_argument("--reason", default="")
    a.set_defaults(func=cmd_users_passwd)
    a = user_sub.add_parser("email", help="set the address the weekly digest is e-mailed to ('' clears it)")
    a.add_argument("name")
    a.add_argument("email")
    a.add_argument("--reason", default="")
    a.set_defaults(func=cmd_users_email)
    a = user_sub.add_parser("list", help="list accounts")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_users_list)
    a = user_sub.add_parser("disable", help="refuse an account's logins; ends its sessions and revokes its tokens")
    a.add_argument("name")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_users_disable)
    a = user_sub.add_parser("enable", help="let a disabled account sign in again (its tokens stay revoked)")
    a.add_argument("name")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_users_enable)

    p = sub.add_parser("tokens", help="API tokens (Bearer) for scripts, with the scope of their user")
    token_sub = p.add_subparsers(title="token commands", metavar="ACTION", required=True)
    a = token_sub.add_parser("add", help="create a token for a user; printed once")
    a.add_argument("user")
    a.add_argument("--name", required=True, help="what the token is for")
    a.set_defaults(func=cmd_tokens_add)
    a = token_sub.add_parser("list", help="tokens (of one user): id, name, created, last used; never the token")
    a.add_argument("user", nargs="?", default=None)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_tokens_list)
    a = token_sub.add_parser("revoke", help="revoke a token, by its id or its name")
    a.add_argument("token", metavar="ID-or-NAME")
    a.add_argument("--reason", default="", help="why (kept in the audit log)")
    a.set_defaults(func=cmd_tokens_revoke)
