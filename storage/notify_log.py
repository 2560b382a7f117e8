"""The notification delivery log (one row per notification and channel) and the alert facts notifiers need."""
from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import pandas as pd
from sqlalchemy import Engine, and_, column, func, inspect, select, update

from storage.alert_feed import store_cursor
from storage.queries_common import frame, reading, utc_times
from storage.schema import alerts, notification_deliveries, queue_snapshots

ANNOUNCEMENTS = ("opened", "escalated", "repeat")
"""Logged events after which an alert counts as announced on a channel."""
OPTIONAL_ALERT_COLUMNS = ("silenced_by", "acknowledged_until_s", "library")
DELIVERY_LOG_COLUMNS = ["channel", "alert_id", "event", "status", "attempts", "last_error", "created_at_s",
                        "last_attempt_at_s", "next_attempt_at_s", "delivered_at_s"]

d = notification_deliveries


class Attempt(NamedTuple):
    """One try at a notification, as the log records it."""

    channel: str
    alert_id: str
    event: str
    feed_event_id: int | None
    at_s: float
    error: str | None  # None when delivered
    final: bool  # delivered, or given up
    next_attempt_at_s: float | None = None


class Pending(NamedTuple):
    row_id: int
    attempts: int


def pending_row(engine: Engine, channel: str, alert_id: str, event: str, feed_event_id: int | None) -> Pending | None:
    """The log row of a notification still being retried (it survives a restart), if any."""
    condition = and_(d.c.channel == channel, d.c.alert_id == alert_id, d.c.event == event, d.c.status == "retrying")
    if feed_event_id is not None:
        condition = and_(condition, d.c.feed_event_id == feed_event_id)
    with engine.connect() as conn:
        row = conn.execute(select(d.c.id, d.c.attempts).where(condition).order_by(d.c.id.desc())).first()
    return Pending(*row) if row is not None else None


def record_attempt(engine: Engine, attempt: Attempt, pending: Pending | None,
                   cursor: tuple[str, int] | None = None) -> Pending:
    """Log a try (new row or the pending one's next attempt); with `cursor`, move that consumer's cursor in the
    same transaction, so a delivered notification and the feed position never disagree."""
    status = "retrying" if not attempt.final else ("delivered" if attempt.error is None else "failed")
    values: dict[str, Any] = dict(status=status, last_attempt_at_s=attempt.at_s,
                                  next_attempt_at_s=None if attempt.final else attempt.next_attempt_at_s,
                                  delivered_at_s=attempt.at_s if status == "delivered" else None)
    if attempt.error is not None:
        values["last_error"] = attempt.error
    with engine.begin() as conn:
        if pending is None:
            row_id = conn.execute(d.insert().values(
                channel=attempt.channel, alert_id=attempt.alert_id, event=attempt.event,
                feed_event_id=attempt.feed_event_id, attempts=1, created_at_s=attempt.at_s, **values)
            ).inserted_primary_key[0]
            pending = Pending(row_id, 1)
        else:
            pending = Pending(pending.row_id, pending.attempts + 1)
            conn.execute(update(d).where(d.c.id == pending.row_id).values(attempts=pending.attempts, **values))
        if cursor is not None:
            store_cursor(conn, *cursor)
    return pending


def last_announced(engine: Engine, channel: str, alert_ids: Iterable[str] | None = None) -> dict[str, float]:
    """Alert id -> when it was last announced (opened, escalated or repeated) on the channel, delivered."""
    condition = and_(d.c.channel == channel, d.c.status == "delivered", d.c.event.in_(ANNOUNCEMENTS))
    ids = None if alert_ids is None else list(alert_ids)
    if ids is not None:
        condition = and_(condition, d.c.alert_id.in_(ids))
    statement = select(d.c.alert_id, func.max(d.c.delivered_at_s)).where(condition).group_by(d.c.alert_id)
    with engine.connect() as conn:
        return {alert_id: float(at_s) for alert_id, at_s in conn.execute(statement)}


def open_announced(engine: Engine, channel: str) -> dict[str, float]:
    """Open alerts announced on the channel -> when last announced (the candidates for a repeat)."""
    open_ids = select(alerts.c.id).where(alerts.c.resolved_at_s.is_(None)).scalar_subquery()
    statement = (select(d.c.alert_id, func.max(d.c.delivered_at_s))
                 .where(d.c.channel == channel, d.c.status == "delivered", d.c.event.in_(ANNOUNCEMENTS),
                        d.c.alert_id.in_(open_ids))
                 .group_by(d.c.alert_id))
    with engine.connect() as conn:
        return {alert_id: float(at_s) for alert_id, at_s in conn.execute(statement)}


def optional_alert_columns(engine: Engine) -> tuple[str, ...]:
    """Which of silenced_by, acknowledged_until_s and library the alerts table has (older schemas lack them)."""
    present = {c["name"] for c in inspect(engine).get_columns(alerts.name)}
    return tuple(name for name in OPTIONAL_ALERT_COLUMNS if name in present)


def alert_rows(engine: Engine, alert_ids: Iterable[str], optional: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Alert id -> its row (every column of the schema, plus the optional ones present)."""
    ids = list(alert_ids)
    if not ids:
        return {}
    statement = select(*alerts.c, *[column(name) for name in optional if name not in alerts.c]) \
        .where(alerts.c.id.in_(ids))
    with engine.connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(statement).mappings()}


def queue_libraries(engine: Engine, queue_name: str) -> set[str]:
    """The libraries whose snapshots name this queue."""
    statement = select(queue_snapshots.c.library).where(queue_snapshots.c.queue_name == queue_name).distinct()
    with engine.connect() as conn:
        return set(conn.execute(statement).scalars())


def delivery_log(engine: Engine, *, limit: int = 100, channel: str | None = None) -> pd.DataFrame:
    """The newest notification deliveries, newest first, with UTC times."""
    statement = select(*[d.c[name] for name in DELIVERY_LOG_COLUMNS])
    if channel is not None:
        statement = statement.where(d.c.channel == channel)
    statement = statement.order_by(d.c.created_at_s.desc(), d.c.id.desc()).limit(limit)
    with reading(engine) as conn:
        rows = frame(conn, statement, DELIVERY_LOG_COLUMNS)
    for name in ("created", "last_attempt", "next_attempt", "delivered"):
        rows[f"{name}_at"] = utc_times(rows[f"{name}_at_s"])
    return rows
