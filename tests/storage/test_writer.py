from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select

from core import alert_rules as alerts
from core.derive import QueueWindow, snapshot_row
from core.health import ThresholdSet, evaluate
from core.model import Cursor, QueueReading
from storage.engine import MIGRATIONS, StorageError, latest_version, make_engine, run_migrations
from storage.schema import alert_events, alerts as alerts_table, cycles, queue_snapshots
from storage.writer import CycleRecord, acknowledge_alert, record_outage, write_cycle


def _row(queue="q", waiting=5, now_s=1000.0):
    reading = QueueReading(queue, "rq", waiting, 1, 0, 0, 0, 0, None, Cursor(1.0, 2.0))
    row, breaches, _ = snapshot_row(reading, QueueWindow(), now_s=now_s, interval_s=10, memory_usage_mb=0,
                                    thresholds=ThresholdSet())
    return row, breaches


def _cycle(engine, now_s, **waiting_by_queue):
    rows, breaches = [], {}
    for queue, waiting in waiting_by_queue.items():
        row, breaches[queue] = _row(queue, waiting, now_s)
        rows.append(row)
    record = CycleRecord(now_s - 0.1, now_s, 3, rows)

    def plan(open_rows):
        return alerts.plan(open_rows, breaches, now_s)

    return write_cycle(engine, record, plan)


def _count(engine, table, where=None):
    query = select(func.count()).select_from(table)
    with engine.connect() as conn:
        return conn.execute(query if where is None else query.where(where)).scalar_one()


def test_alert_lifecycle_through_stored_cycles(engine):
    assert [c.kind for c in _cycle(engine, 100.0, q=215)] == ["opened"]
    assert [c.kind for c in _cycle(engine, 110.0, q=300)] == ["updated"]
    assert _count(engine, alerts_table) == 1
    ack = acknowledge_alert(engine, "alert-100-q-queue_depth", "ops@example.com", 115.0)
    assert ack["acknowledged"] and ack["acknowledged_by"] == "ops@example.com" and ack["acknowledged_at_s"] == 115.0
    again = acknowledge_alert(engine, "alert-100-q-queue_depth", "someone-else@example.com", 116.0)
    assert again["acknowledged_by"] == "ops@example.com" and again["acknowledged_at_s"] == 115.0
    assert [c.kind for c in _cycle(engine, 120.0, q=1500)] == ["escalated"]
    with engine.connect() as conn:
        row = conn.execute(select(alerts_table)).mappings().one()
    assert row["severity"] == "critical" and row["acknowledged"] is False and row["threshold"] == 1000
    assert [c.kind for c in _cycle(engine, 130.0, q=3)] == ["resolved"]
    assert [c.kind for c in _cycle(engine, 140.0, q=250)] == ["opened"]
    with engine.connect() as conn:
        events = [r.event for r in conn.execute(select(alert_events.c.event).order_by(alert_events.c.id))]
    assert events == ["opened", "acknowledged", "escalated", "resolved", "opened"]
    assert acknowledge_alert(engine, "alert-0-nope-queue_depth", "x", 1.0) is None


def test_reopen_within_the_same_second_gets_a_distinct_id(engine):
    _cycle(engine, 100.2, q=215)
    _cycle(engine, 100.4, q=1)
    changes = _cycle(engine, 100.6, q=215)
    assert changes[0].alert_id == "alert-100-q-queue_depth-2"


def test_a_failing_cycle_leaves_nothing_behind(engine):
    good, _ = _row("good", 1, 50.0)
    bad = dict(good, queue_name="bad", waiting=None)  # violates NOT NULL mid-cycle
    with pytest.raises(StorageError):
        write_cycle(engine, CycleRecord(49.0, 50.0, 3, [good, bad]), lambda open_rows: [])
    assert _count(engine, cycles) == 0 and _count(engine, queue_snapshots) == 0


def test_outage_is_recorded(engine):
    record_outage(engine, 10.0, 11.0, "Redis unreachable: connection refused")
    with engine.connect() as conn:
        row = conn.execute(select(cycles)).mappings().one()
    assert row["ok"] is False and "refused" in row["error"]


def test_migrations_are_versioned_and_idempotent(db_url):
    engine = make_engine(db_url)
    assert run_migrations(engine) == latest_version()
    assert run_migrations(engine) == latest_version()
    with engine.connect() as conn:
        versions = [v for (v,) in conn.exec_driver_sql("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [number for number, _ in MIGRATIONS]


def test_bad_urls_give_clear_errors(tmp_path):
    with pytest.raises(StorageError, match="not a database URL"):
        make_engine("definitely not a url")
    with pytest.raises(StorageError):
        make_engine("nosuchdialect://x/y")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError):
        make_engine(f"sqlite:///{blocker}/sub/db.sqlite")


def test_locked_database_is_reported_not_lost(db_url, monkeypatch):
    import storage.engine as engine_module

    engine = make_engine(db_url)
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = db_url.removeprefix("sqlite:///")
    locker = sqlite3.connect(path)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        short = make_engine(db_url, migrate=False)
        row, _ = _row("q", 1, 5.0)
        with pytest.raises(StorageError, match="could not store"):
            write_cycle(short, CycleRecord(4.0, 5.0, 3, [row]), lambda open_rows: [])
    finally:
        locker.rollback()
        locker.close()
    assert _count(engine, queue_snapshots) == 0
    _cycle(engine, 6.0, q=1)
    assert _count(engine, queue_snapshots) == 1


def test_breaches_reach_the_row():
    row, breaches = _row("q", 215)
    assert row["status"] == "warning" and "Queue depth above warning threshold (215 > 200)" in row["issues"]
    assert breaches == evaluate({"waiting": 215}, ThresholdSet())


def test_a_version_1_database_is_upgraded_in_place(db_url, monkeypatch):
    import storage.engine as engine_module
    from sqlalchemy import inspect

    monkeypatch.setattr(engine_module, "MIGRATIONS", engine_module.MIGRATIONS[:1])
    old = make_engine(db_url)
    with old.begin() as conn:  # what a version-1 collector wrote (today's writer needs today's tables)
        cycle_id = conn.execute(cycles.insert().values(started_at_s=9.9, finished_at_s=10.0, ok=True,
                                                       round_trips=3, queue_count=1)).inserted_primary_key[0]
        conn.execute(queue_snapshots.insert().values(**_row("q", 215, 10.0)[0], cycle_id=cycle_id))
    assert "users" not in inspect(old).get_table_names()
    monkeypatch.undo()
    assert run_migrations(old) == latest_version()
    assert {"users", "api_tokens"} <= set(inspect(old).get_table_names())
    assert _count(old, queue_snapshots) == 1


def test_upgrade_adds_the_recent_executions_column(db_url):
    from sqlalchemy import create_engine, inspect, text

    raw = create_engine(db_url)
    with raw.begin() as conn:  # a version-1 database as version 1 created it
        conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at_s FLOAT NOT NULL)"))
        conn.execute(text("INSERT INTO schema_version VALUES (1, 0)"))
        conn.execute(text("CREATE TABLE queue_snapshots (id INTEGER PRIMARY KEY, queue_name VARCHAR(255))"))
    assert run_migrations(raw) == latest_version()
    columns = {c["name"] for c in inspect(raw).get_columns("queue_snapshots")}
    assert {"recent_processing_ms", "cursor_state", "unavailable", "details"} <= columns
