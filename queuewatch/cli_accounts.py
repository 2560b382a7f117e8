"""`queuewatch users ...` and `queuewatch tokens ...`."""
from __future__ import annotations

import argparse
import getpass
import sys
import time
from datetime import datetime, timezone

from sqlalchemy import Engine

from accounts.accounts import AccountError, Role, add_user, issue_token
from storage import users as user_rows


def add_parsers(commands, add_common) -> None:
    users = commands.add_parser("users", help="manage dashboard and API users")
    user_commands = users.add_subparsers(dest="action", required=True, help="what to do")
    add = user_commands.add_parser("add", help="add a user (password from a prompt, or stdin with --password-stdin)")
    add.add_argument("email", help="the user's email (their login)")
    add.add_argument("--role", default=Role.ADMIN.value, choices=[r.value for r in Role],
                     help="ADMIN sees everything; VIEWER can log in but is refused admin pages and the API")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_commands.add_parser("list", help="list users")
    disable = user_commands.add_parser("disable", help="disable a user (their tokens stop working)")
    disable.add_argument("email", help="the user's email")

    tokens = commands.add_parser("tokens", help="manage API tokens")
    token_commands = tokens.add_subparsers(dest="action", required=True, help="what to do")
    create = token_commands.add_parser("create", help="create an API token for a user and print it once")
    create.add_argument("email", help="the user's email")
    create.add_argument("--name", help="a label for the token")
    listing = token_commands.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("email", nargs="?", help="only this user's tokens")
    revoke = token_commands.add_parser("revoke", help="revoke a token by id or prefix, or all of a user's")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="token_id", type=int, help="token id (from `tokens list`)")
    which.add_argument("--prefix", help="token prefix (its first 10 characters)")
    which.add_argument("--email", dest="token_email", help="revoke every token of this user")
    for group in (user_commands, token_commands):
        for leaf in group.choices.values():
            add_common(leaf, redis=False)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise AccountError("passwords do not match")
    return first


def _when(epoch_s: float | None) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if epoch_s else "-"


def run_users(engine: Engine, args: argparse.Namespace) -> int:
    if args.action == "add":
        user = add_user(engine, args.email, args.role, _read_password(args.password_stdin))
        print(f"added {user.email} ({user.role.value})")
    elif args.action == "list":
        for row in user_rows.list_users(engine):
            state = "disabled" if row["disabled"] else "active"
            print(f"{row['email']}\t{row['role']}\t{state}\tcreated {_when(row['created_at_s'])}")
    elif args.action == "disable":
        if not user_rows.update_user(engine, args.email.strip().lower(), disabled=True):
            raise AccountError(f"no user with email {args.email}")
        print(f"disabled {args.email}")
    return 0


def run_tokens(engine: Engine, args: argparse.Namespace) -> int:
    if args.action == "create":
        token, token_id = issue_token(engine, args.email, args.name)
        print(token)
        print(f"token {token_id} for {args.email}: store it now, it is not shown again", file=sys.stderr)
    elif args.action == "list":
        for row in user_rows.list_tokens(engine, args.email):
            state = f"revoked {_when(row['revoked_at_s'])}" if row["revoked_at_s"] else "active"
            print(f"{row['id']}\t{row['token_prefix']}…\t{row['email']}\t{row['name'] or '-'}\t{state}\t"
                  f"last used {_when(row['last_used_at_s'])}")
    elif args.action == "revoke":
        count = user_rows.revoke_tokens(engine, time.time(), token_id=args.token_id, prefix=args.prefix,
                                        email=args.token_email)
        if not count:
            raise AccountError("no matching active token")
        print(f"revoked {count} token(s)")
    return 0
