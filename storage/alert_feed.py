"""The alert event feed (opened, escalated, acknowledged, ...) read in order, with stored delivery cursors.

Events: opened, escalated, deescalated, resolved, acknowledged, and unacknowledged (an acknowledgement "for"
a while ended while the alert still fires). An alert is opened only once its breach held for pending_s, and
resolved only once its condition stayed clear for keep_firing_s, so the feed carries no flapping. System
alerts (types redis_unreachable and stale_data, queue name the Redis URL or "(collector)") come through the
feed too. `silenced_by` is the id of the silence in force for the alert when read (None: not silenced), kept
current every cycle: a notifier skips items whose silenced_by is set.
"""
from __future__ import annotations

from typing import Any, Iterable, NamedTuple

from sqlalchemy import Connection, Engine, func, select, update

from storage.queries_alerts import alert_dict
from storage.schema import alert_events, alerts, delivery_cursors


class FeedItem(NamedTuple):
    event_id: int
    change: str  # opened | escalated | deescalated | resolved | acknowledged | unacknowledged
    alert: dict[str, Any]  # the spec's Alert as it is now
    severity: str = ""  # the severity the event recorded (the alert's may have changed since)
    silenced_by: int | None = None  # the silence in force for the alert now (None: not silenced)


def newest_event_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0))).scalar_one()


def events_after(engine: Engine, last_event_id: int, changes: Iterable[str], limit: int = 500) -> list[FeedItem]:
    """Events newer than `last_event_id` of the given kinds, oldest first."""
    statement = (select(alert_events.c.id.label("event_id"), alert_events.c.event,
                        alert_events.c.severity.label("event_severity"), *alerts.c)
                 .join(alerts, alerts.c.id == alert_events.c.alert_id)
                 .where(alert_events.c.id > last_event_id, alert_events.c.event.in_(list(changes)))
                 .order_by(alert_events.c.id).limit(limit))
    with engine.connect() as conn:
        return [FeedItem(row["event_id"], row["event"], alert_dict(row), row["event_severity"],
                         row["silenced_by"])
                for row in conn.execute(statement).mappings()]


def delivery_cursor(engine: Engine, consumer: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(delivery_cursors.c.last_alert_event_id)
                            .where(delivery_cursors.c.consumer == consumer)).scalar()


def set_delivery_cursor(engine: Engine, consumer: str, last_event_id: int) -> None:
    with engine.begin() as conn:
        store_cursor(conn, consumer, last_event_id)


def store_cursor(conn: Connection, consumer: str, last_event_id: int) -> None:
    """Set a consumer's cursor inside the caller's transaction."""
    changed = conn.execute(update(delivery_cursors).where(delivery_cursors.c.consumer == consumer)
                           .values(last_alert_event_id=last_event_id)).rowcount
    if not changed:
        conn.execute(delivery_cursors.insert().values(consumer=consumer, last_alert_event_id=last_event_id))
