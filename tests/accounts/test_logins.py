"""Login lockout and dashboard sessions on a real SQLite database (times passed in, so no waiting)."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import inspect

from accounts.accounts import add_user
from accounts.logins import (
    GRANT_TTL_S, LockoutPolicy, Outcome, check_session, end_session, log_in, redeem_grant, start_session,
)
from storage.engine import applied_versions, current_version, make_engine
from storage.users import update_user

PASSWORD = "correct horse battery"
T0_S = 1_800_000_000.0


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'logins.db'}")
    for email in ("ops@example.com", "dev@example.com"):
        add_user(engine, email, "ADMIN", PASSWORD)
    yield engine
    engine.dispose()


def test_migration_4_adds_the_session_tables(engine):
    with engine.connect() as conn:
        assert 4 in applied_versions(conn) and current_version(conn) >= 4
    assert {"dashboard_sessions", "login_attempts"} <= set(inspect(engine).get_table_names())


def test_the_default_cool_downs():
    policy = LockoutPolicy()
    assert (policy.max_failures, policy.window_s, policy.base_cooldown_s) == (5, 900.0, 60.0)
    assert [policy.cooldown_s(n) for n in range(4, 11)] == [0, 60, 120, 240, 480, 900, 900]


def test_five_failures_lock_the_account_even_for_the_right_password(engine, caplog):
    policy = LockoutPolicy()
    caplog.set_level(logging.INFO, logger="accounts.logins")
    for attempt in range(4):
        outcome = log_in(engine, "ops@example.com", "nope", "127.0.0.1", T0_S + attempt, policy).outcome
        assert outcome is Outcome.WRONG
    fifth = log_in(engine, "ops@example.com", "nope", "127.0.0.1", T0_S + 4, policy)
    assert fifth.outcome is Outcome.LOCKED and fifth.retry_after_s == 60
    refused = log_in(engine, "OPS@example.com", PASSWORD, "127.0.0.2", T0_S + 63, policy)  # other address too
    assert refused.outcome is Outcome.LOCKED and refused.retry_after_s == pytest.approx(1.0)
    assert log_in(engine, "ops@example.com", PASSWORD, "127.0.0.2", T0_S + 64.5, policy).outcome is Outcome.OK
    assert "login lockout (account): account ops@example.com, address 127.0.0.1" in caplog.text
    assert "nope" not in caplog.text and PASSWORD not in caplog.text
    assert all(r.levelno == logging.WARNING for r in caplog.records if "login lockout" in r.message)


def test_further_failures_lengthen_the_lockout_and_a_success_resets_the_account(engine):
    policy = LockoutPolicy()
    for attempt in range(5):
        log_in(engine, "ops@example.com", "nope", f"127.0.1.{attempt}", T0_S + attempt, policy)
    sixth = log_in(engine, "ops@example.com", "nope", "127.0.1.9", T0_S + 70, policy)
    assert sixth.outcome is Outcome.LOCKED and sixth.retry_after_s == 120
    early = log_in(engine, "ops@example.com", PASSWORD, "127.0.1.9", T0_S + 189, policy)
    assert early.outcome is Outcome.LOCKED
    assert log_in(engine, "ops@example.com", PASSWORD, "127.0.1.9", T0_S + 191, policy).outcome is Outcome.OK
    assert log_in(engine, "ops@example.com", "nope", "127.0.1.9", T0_S + 192, policy).outcome is Outcome.WRONG


def test_failures_age_out_of_the_window(engine):
    policy = LockoutPolicy()
    for attempt in range(4):
        log_in(engine, "ops@example.com", "nope", "127.0.2.1", T0_S + attempt, policy)
    late = log_in(engine, "ops@example.com", "nope", "127.0.2.1", T0_S + 901, policy)
    assert late.outcome is Outcome.WRONG


def test_five_failures_from_one_address_lock_it_for_every_account(engine):
    policy = LockoutPolicy()
    for index in range(5):
        log_in(engine, f"guess{index}@example.com", "nope", "127.0.3.1", T0_S + index, policy)
    same_address = log_in(engine, "dev@example.com", PASSWORD, "127.0.3.1", T0_S + 10, policy)
    assert same_address.outcome is Outcome.LOCKED
    assert log_in(engine, "dev@example.com", PASSWORD, "127.0.3.2", T0_S + 10, policy).outcome is Outcome.OK


def _session(engine, now_s: float = T0_S, max_age_s: float = 3600.0):
    user = log_in(engine, "ops@example.com", PASSWORD, "127.0.4.1", now_s, LockoutPolicy()).user
    return start_session(engine, user, "127.0.4.1", now_s, max_age_s)


def test_a_grant_buys_one_cookie_once_and_only_while_fresh(engine):
    session_id, grant = _session(engine)
    assert redeem_grant(engine, grant, T0_S + GRANT_TTL_S + 1) is None
    session_id, grant = _session(engine)
    token, max_age_s = redeem_grant(engine, grant, T0_S + 1)
    assert max_age_s == pytest.approx(3599) and redeem_grant(engine, grant, T0_S + 2) is None
    by_cookie = check_session(engine, T0_S + 2, 60.0, cookie=token)
    assert by_cookie.session_id == session_id and by_cookie.user.email == "ops@example.com"
    assert check_session(engine, T0_S + 2, 60.0, cookie=token + "x").reason == "missing"


def test_sessions_end_on_idle_age_logout_disable_and_see_role_changes(engine):
    session_id, _ = _session(engine)
    assert check_session(engine, T0_S + 59, 60.0, session_id=session_id).reason == ""
    assert check_session(engine, T0_S + 61, 60.0, session_id=session_id).reason == "expired"
    assert check_session(engine, T0_S + 3600, 1e9, session_id=session_id).reason == "expired"  # max age
    update_user(engine, "ops@example.com", role="VIEWER")
    demoted = check_session(engine, T0_S + 1, 60.0, session_id=session_id)
    assert demoted.reason == "not_admin" and not demoted.user.is_admin
    update_user(engine, "ops@example.com", role="ADMIN", disabled=True)
    assert check_session(engine, T0_S + 1, 60.0, session_id=session_id).reason == "disabled"
    update_user(engine, "ops@example.com", disabled=False)
    assert end_session(engine, T0_S + 2, session_id=session_id) == 1
    assert check_session(engine, T0_S + 3, 60.0, session_id=session_id).reason == "missing"
