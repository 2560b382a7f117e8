"""`queuewatch users` and `queuewatch tokens` through the real CLI entry point and a real SQLite file."""
from __future__ import annotations

import io

import pytest

from accounts.accounts import authenticate, user_for_token
from queuewatch.cli import main
from storage.engine import make_engine


@pytest.fixture
def cli(db_url, monkeypatch, capsys):
    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main([*args, "--db", db_url])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_users_and_tokens_lifecycle(cli, db_url):
    assert cli("users", "add", "Ops@Example.com", "--role", "ADMIN", "--password-stdin",
               stdin="correct horse\n")[0] == 0
    assert cli("users", "add", "viewer@example.com", "--role", "VIEWER", "--password-stdin",
               stdin="correct horse\n")[0] == 0
    code, out, _ = cli("users", "list")
    assert code == 0 and "ops@example.com\tADMIN\tactive" in out and "viewer@example.com\tVIEWER" in out
    engine = make_engine(db_url)
    assert authenticate(engine, "ops@example.com", "correct horse").is_admin
    assert authenticate(engine, "ops@example.com", "wrong") is None

    code, out, err = cli("tokens", "create", "ops@example.com", "--name", "ci")
    token = out.strip()
    assert code == 0 and token.startswith("qw_") and "not shown again" in err
    assert user_for_token(engine, token).email == "ops@example.com"
    code, out, _ = cli("tokens", "list")
    assert token not in out and token[:10] in out and "\tci\tactive" in out
    assert cli("tokens", "revoke", "--prefix", token[:10])[0] == 0
    assert user_for_token(engine, token) is None
    assert cli("tokens", "revoke", "--prefix", token[:10])[1:] == ("", "queuewatch: no matching active token\n")

    second = cli("tokens", "create", "ops@example.com")[1].strip()
    assert cli("users", "disable", "ops@example.com")[0] == 0
    assert user_for_token(engine, second) is None and authenticate(engine, "ops@example.com", "correct horse") is None


@pytest.mark.parametrize("args,stdin,message", [
    (("users", "add", "not-an-email", "--password-stdin"), "correct horse\n", "not an email address"),
    (("users", "add", "a@example.com", "--password-stdin"), "short\n", "at least 8 characters"),
    (("tokens", "create", "nobody@example.com"), "", "no user with email"),
    (("users", "disable", "nobody@example.com"), "", "no user with email"),
])
def test_clear_errors(cli, args, stdin, message):
    code, _, err = cli(*args, stdin=stdin)
    assert code == 1 and message in err


def test_duplicate_user(cli):
    assert cli("users", "add", "a@example.com", "--password-stdin", stdin="correct horse\n")[0] == 0
    code, _, err = cli("users", "add", "A@example.com", "--password-stdin", stdin="correct horse\n")
    assert code == 1 and "already exists" in err


def test_token_lookup_reads_only_and_use_is_recorded_apart(engine):
    from accounts.accounts import add_user, issue_token, token_digest, token_owner
    from storage.token_use import note_tokens_used
    from storage.users import list_tokens, user_for_token_digest

    add_user(engine, "a@example.com", "ADMIN", "correct horse")
    token, token_id = issue_token(engine, "a@example.com")
    assert user_for_token_digest(engine, token_digest(token))["email"] == "a@example.com"
    assert token_owner(engine, token)[1] == token_id
    assert list_tokens(engine)[0]["last_used_at_s"] is None  # a lookup writes nothing
    note_tokens_used(engine, {token_id: 1061.0})
    note_tokens_used(engine, {token_id: 1000.0})  # an older use never moves the time back
    assert list_tokens(engine)[0]["last_used_at_s"] == 1061.0
