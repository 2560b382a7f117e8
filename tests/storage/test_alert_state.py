"""Stored alert timers, silences and snoozes through write_cycle, on SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import select

from core import alert_rules as rules
from storage.queries_alerts import list_alerts, pending_breaches
from storage.schema import alert_events, alerts
from storage.silences import add_silence, list_silences
from storage.writer import CycleRecord, acknowledge_alert, write_cycle
from tests.storage.test_writer import _row

TIMINGS = rules.AlertTimings(rules.AlertTiming(pending_s=20, keep_firing_s=30))


def _cycle(engine, now_s: float, waiting: int):
    row, breaches = _row("q", waiting, now_s)

    def plan(open_rows, states):
        return rules.plan_cycle(open_rows, {"q": breaches}, now_s, states=states, timings=TIMINGS,
                                libraries={"q": "rq"})

    return [c.kind for c in write_cycle(engine, CycleRecord(now_s - 0.1, now_s, 1, [row]), plan_rules=plan)]


def _alert(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(alerts)).mappings().one())


def check_timers_silences_and_snoozes(engine) -> None:
    assert _cycle(engine, 1000, 215) == []
    assert pending_breaches(engine)["pending_since_s"].tolist() == [1000]
    silence = add_silence(engine, duration_s=25, comment="deploy", now_s=1005, queue_glob="q", library="rq")
    assert _cycle(engine, 1020, 215) == ["opened"]
    alert = _alert(engine)
    assert alert["library"] == "rq" and alert["silenced_by"] == silence["id"] and pending_breaches(engine).empty
    acknowledge_alert(engine, alert["id"], "ops@example.com", 1021, until_s=1040)
    assert _cycle(engine, 1031, 3) == []  # clear since 1031; the silence ended at 1030
    assert _alert(engine)["silenced_by"] is None and list_silences(engine, 1031) == []
    assert _alert(engine)["acknowledged"] is True
    assert _cycle(engine, 1041, 3) == []  # the snooze ended while the alert still fires
    alert = _alert(engine)
    assert alert["acknowledged"] is False and alert["acknowledged_until_s"] is None
    assert _cycle(engine, 1061, 3) == ["resolved"]
    with engine.connect() as conn:
        events = list(conn.execute(select(alert_events.c.event).order_by(alert_events.c.id)).scalars())
    assert events == ["opened", "acknowledged", "unacknowledged", "resolved"]
    assert list_alerts(engine) == []


def test_on_sqlite(engine):
    check_timers_silences_and_snoozes(engine)


def test_on_postgresql(pg_engine):
    check_timers_silences_and_snoozes(pg_engine)
