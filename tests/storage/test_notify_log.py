"""Schema version 7 (the notification delivery log) and its queries, on real SQLite files."""
from __future__ import annotations

import time

from sqlalchemy import inspect, text

import storage.engine as engine_module
from storage.engine import make_engine, run_migrations
from storage.notify_log import (
    Attempt, delivery_log, last_announced, open_announced, optional_alert_columns, pending_row, record_attempt,
)
from storage.schema import schema_version
from storage.alert_feed import delivery_cursor
from tests.storage.test_writer import _cycle


def _versions(engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(schema_version.select().with_only_columns(schema_version.c.version)).scalars())


def test_version_7_applies_on_a_version_4_database(db_url, monkeypatch):
    monkeypatch.setattr(engine_module, "MIGRATIONS", [m for m in engine_module.MIGRATIONS if m[0] <= 4])
    old = make_engine(db_url)
    assert "notification_deliveries" not in inspect(old).get_table_names()
    monkeypatch.undo()
    assert run_migrations(old) == engine_module.latest_version()
    assert "notification_deliveries" in inspect(old).get_table_names()
    assert 7 in _versions(old)


def test_version_7_applies_after_versions_it_does_not_know(db_url, monkeypatch):
    """A database that another branch already took to 5 and 6 (and maybe created the table) still gets 7."""
    monkeypatch.setattr(engine_module, "MIGRATIONS", [m for m in engine_module.MIGRATIONS if m[0] <= 4])
    old = make_engine(db_url)
    monkeypatch.undo()
    with old.begin() as conn:
        for number in (5, 6):
            conn.execute(schema_version.insert().values(version=number, applied_at_s=time.time()))
        conn.execute(text("CREATE TABLE notification_deliveries (id INTEGER PRIMARY KEY, channel VARCHAR(64))"))
    assert run_migrations(old) == engine_module.latest_version()  # the table exists: created again it would fail
    assert _versions(old) == list(range(1, engine_module.latest_version() + 1))


def test_a_lower_number_added_later_still_runs(db_url, monkeypatch):
    newest = engine_module.latest_version()
    gap = sorted(number for number, _ in engine_module.MIGRATIONS)[-2]  # below the newest, which runs first
    kept = [(number, step) for number, step in engine_module.MIGRATIONS if number != gap]
    monkeypatch.setattr(engine_module, "MIGRATIONS", kept)
    engine = make_engine(db_url)
    assert gap not in _versions(engine)
    ran = []
    monkeypatch.setattr(engine_module, "MIGRATIONS", [*kept, (gap, lambda conn: ran.append(gap))])
    assert run_migrations(engine) == newest
    assert ran == [gap] and gap in _versions(engine)


def test_attempts_are_logged_and_announcements_found(engine):
    _cycle(engine, 20.0, q=215, r=300)
    assert optional_alert_columns(engine) == () or set(optional_alert_columns(engine)) <= {
        "silenced_by", "acknowledged_until_s", "library"}
    first = record_attempt(engine, Attempt("slack", "alert-20-q-queue_depth", "opened", 1, 30.0, "HTTP 503", False,
                                           31.0), None)
    assert pending_row(engine, "slack", "alert-20-q-queue_depth", "opened", 1) == first
    record_attempt(engine, Attempt("slack", "alert-20-q-queue_depth", "opened", 1, 31.0, None, True), first,
                   ("notify:slack", 1))
    record_attempt(engine, Attempt("slack", "alert-20-r-queue_depth", "opened", 2, 32.0, "HTTP 400", True), None)
    assert pending_row(engine, "slack", "alert-20-q-queue_depth", "opened", 1) is None
    assert delivery_cursor(engine, "notify:slack") == 1
    assert last_announced(engine, "slack") == {"alert-20-q-queue_depth": 31.0}
    assert last_announced(engine, "email") == {}
    assert open_announced(engine, "slack") == {"alert-20-q-queue_depth": 31.0}
    _cycle(engine, 40.0, q=1, r=300)  # q resolves
    assert open_announced(engine, "slack") == {}
    log = delivery_log(engine)
    assert list(log["alert_id"]) == ["alert-20-r-queue_depth", "alert-20-q-queue_depth"]
    assert list(log["status"]) == ["failed", "delivered"] and list(log["attempts"]) == [1, 2]
    assert log.iloc[1]["last_error"] == "HTTP 503" and log.iloc[1]["delivered_at_s"] == 31.0
    assert len(delivery_log(engine, channel="email")) == 0

