"""Alert upkeep inside a write: stored timers, the silences that apply, snoozes that ended, a write lock."""
from __future__ import annotations

from typing import Mapping

from sqlalchemy import Connection, and_, delete, insert, select, text, update

from core.alert_rules import Key, RuleState
from core.silences import Silence, silence_for
from storage.schema import alert_events, alert_rule_states, alerts, silences

STATE_FIELDS = ("pending_since_s", "clear_since_s", "severity", "message", "value", "threshold", "library")


def lock_alerts(conn: Connection) -> None:
    """Take the database's write lock now, so that two processes planning alerts do so one after the other
    (PostgreSQL: a transaction-level advisory lock; SQLite: a write statement takes the file's write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7171001)"))
    else:
        conn.execute(update(alert_rule_states).where(text("1 = 0")).values(updated_at_s=0))


def rule_states(conn: Connection) -> list[RuleState]:
    rows = conn.execute(select(alert_rule_states)).mappings()
    return [RuleState(row["queue_name"], row["alert_type"], **{name: row[name] for name in STATE_FIELDS})
            for row in rows]


def save_rule_states(conn: Connection, states: Mapping[Key, RuleState | None], now_s: float) -> None:
    """Store (or, for None, delete) the timers of each (queue, type) the plan touched."""
    t = alert_rule_states
    for (queue_name, alert_type), state in states.items():
        where = and_(t.c.queue_name == queue_name, t.c.alert_type == alert_type)
        conn.execute(delete(t).where(where))
        if state is not None:
            conn.execute(insert(t).values(queue_name=queue_name, alert_type=alert_type, updated_at_s=now_s,
                                          **{name: getattr(state, name) for name in STATE_FIELDS}))


def stored_silences(conn: Connection, now_s: float) -> list[Silence]:
    """The silences in force at `now_s`."""
    s = silences
    rows = conn.execute(select(s).where(and_(s.c.starts_at_s <= now_s, s.c.ends_at_s > now_s))).mappings()
    return [silence_from_row(row) for row in rows]


def silence_from_row(row: Mapping) -> Silence:
    return Silence(row["id"], row["starts_at_s"], row["ends_at_s"], row["queue_glob"], row["library"],
                   row["alert_type"], row["severity"])


def refresh_silenced(conn: Connection, now_s: float) -> None:
    """Set each open alert's silenced_by to the silence in force that matches it (NULL: none)."""
    active = stored_silences(conn, now_s)
    rows = conn.execute(select(alerts.c.id, alerts.c.queue_name, alerts.c.library, alerts.c.alert_type,
                               alerts.c.severity, alerts.c.silenced_by)
                        .where(alerts.c.resolved_at_s.is_(None))).mappings()
    for row in list(rows):
        silenced_by = silence_for(active, now_s, row["queue_name"], row["library"], row["alert_type"],
                                  row["severity"])
        if silenced_by != row["silenced_by"]:
            conn.execute(update(alerts).where(alerts.c.id == row["id"]).values(silenced_by=silenced_by))


def end_snoozes(conn: Connection, now_s: float) -> list[str]:
    """Open alerts acknowledged "for" a while that has passed count as unacknowledged again (an
    `unacknowledged` event each); returns their ids."""
    a = alerts
    ended = conn.execute(select(a.c.id, a.c.severity, a.c.value).where(and_(
        a.c.resolved_at_s.is_(None), a.c.acknowledged.is_(True), a.c.acknowledged_until_s.is_not(None),
        a.c.acknowledged_until_s <= now_s))).all()
    for alert_id, severity, value in ended:
        conn.execute(update(a).where(a.c.id == alert_id).values(
            acknowledged=False, acknowledged_by=None, acknowledged_at_s=None, acknowledged_until_s=None))
        conn.execute(alert_events.insert().values(alert_id=alert_id, at_s=now_s, event="unacknowledged",
                                                  severity=severity, value=value))
    return [alert_id for alert_id, _, _ in ended]


def upkeep(conn: Connection, now_s: float) -> None:
    """What every alert write ends with: ended snoozes, then the silences that apply now."""
    end_snoozes(conn, now_s)
    refresh_silenced(conn, now_s)
