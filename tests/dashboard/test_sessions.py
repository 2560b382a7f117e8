"""Sessions and lockout through AppTest (the app's script runs, real SQLite; no browser needed)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from storage.engine import make_engine
from storage.schema import alerts, dashboard_sessions
from storage.users import update_user
from tests.dashboard.test_pages import APP, _app, _ensure_user, _log_in, _metrics, _texts


def _acknowledged(db_url: str) -> list[str]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ids = conn.execute(select(alerts.c.id).where(alerts.c.acknowledged.is_(True))).scalars().all()
    engine.dispose()
    return list(ids)


def _change(db_url: str, email: str, **values) -> None:
    engine = make_engine(db_url)
    update_user(engine, email, **values)
    engine.dispose()


@pytest.mark.parametrize("change,why", [
    ({"role": "VIEWER"}, "Admin access required: your account no longer has the ADMIN role."),
    ({"disabled": True}, "Your account is disabled."),
], ids=["demoted", "disabled"])
def test_acknowledging_after_losing_access_records_nothing(seeded_url, change, why):
    at = _app("acting@example.com")
    at.switch_page("pages/alerts.py").run()
    buttons = [b for b in at.button if b.label == "Acknowledge"]
    assert buttons and _acknowledged(seeded_url) == []
    _change(seeded_url, "acting@example.com", **change)
    buttons[0].click()
    at.run()
    assert not at.exception and _acknowledged(seeded_url) == []
    shown = _texts(at.error) + _texts(at.info) + _texts(at.warning)
    assert "Acknowledgement not done." in shown and why in shown
    assert not [b for b in at.button if b.label == "Acknowledge"]


def test_role_and_disabled_state_are_read_on_every_run(seeded_url):
    at = _app("changing@example.com")
    assert _metrics(at)["Queues"] == "5"
    _change(seeded_url, "changing@example.com", role="VIEWER")
    at.run()
    assert "Admin access required" in _texts(at.error) and not at.metric
    _change(seeded_url, "changing@example.com", role="ADMIN")
    at.run()
    assert _metrics(at)["Queues"] == "5"
    _change(seeded_url, "changing@example.com", disabled=True)
    at.run()
    assert "Your account is disabled. Ask an admin to enable it." in _texts(at.info) and not at.metric
    assert any(b.label == "Log in" for b in at.button)


def test_logging_out_revokes_the_session_row(seeded_url):
    at = _app("leaving@example.com")
    next(b for b in at.button if b.label == "Log out").click()
    at.run()
    assert any(b.label == "Log in" for b in at.button)
    engine = make_engine(seeded_url)
    with engine.connect() as conn:
        revoked = conn.execute(select(dashboard_sessions.c.revoked_at_s)).scalars().all()
    engine.dispose()
    assert revoked and all(at_s is not None for at_s in revoked)


def test_the_login_page_says_too_many_failed_attempts(seeded_url):
    from streamlit.testing.v1 import AppTest

    _ensure_user(seeded_url, "target@example.com", "ADMIN")
    at = AppTest.from_file(APP, default_timeout=60).run()
    for attempt in range(5):
        _log_in(at, "target@example.com", f"wrong {attempt}")
    assert "Too many failed attempts. Try again in 60 s." in _texts(at.error)
    _log_in(at, "target@example.com")
    assert "Too many failed attempts" in _texts(at.error) and not at.metric


def test_a_page_run_counts_as_activity(seeded_url, monkeypatch):
    monkeypatch.setenv("QUEUEWATCH_SESSION_TTL_S", "3")
    at = _app("busy@example.com")
    for _ in range(3):
        time.sleep(1.2)
        at.run()
        assert _metrics(at)["Queues"] == "5"
    time.sleep(3.3)
    at.run()
    assert "Your session expired. Please log in again." in _texts(at.info) and not at.metric
