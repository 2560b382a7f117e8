"""Alert reads: the spec's Alert shape with filters, alert history including resolved alerts, alert events."""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

import pandas as pd
from sqlalchemy import Engine, and_, func, not_, or_, select, true

from core.health import AlertType
from storage.queries_common import frame, is_missing, iso_utc, reading, utc_times
from storage.schema import alert_events, alert_rule_states, alerts

ALERT_HISTORY_COLUMNS = [
    "id", "queue_name", "alert_type", "severity", "message", "value", "threshold", "opened_at_s",
    "updated_at_s", "resolved_at_s", "acknowledged", "acknowledged_by", "acknowledged_at_s",
    "acknowledged_until_s", "silenced_by", "library",
]
SPEC_TYPES = tuple(t.value for t in AlertType)
"""The spec's five alert types: GET /alerts and the summaries list these only (system alerts are apart)."""


def acknowledgement_holds(row: Mapping[str, Any], now_s: float) -> bool:
    """Acknowledged, and not "for" a while that has passed (then it counts as unacknowledged again)."""
    until_s = row.get("acknowledged_until_s")
    return bool(row["acknowledged"]) and (is_missing(until_s) or until_s > now_s)


def alert_dict(row: Mapping[str, Any], now_s: float | None = None) -> dict[str, Any]:
    """The spec's Alert for one alerts row; acknowledgedBy/acknowledgedAt only while acknowledged."""
    alert: dict[str, Any] = {
        "id": str(row["id"]),
        "severity": str(row["severity"]),
        "queueName": str(row["queue_name"]),
        "type": str(row["alert_type"]),
        "message": str(row["message"]),
        "value": float(row["value"]),
        "threshold": float(row["threshold"]),
        "timestamp": iso_utc(row["opened_at_s"]),
        "acknowledged": acknowledgement_holds(row, time.time() if now_s is None else now_s),
    }
    if alert["acknowledged"]:
        if not is_missing(row.get("acknowledged_by")):
            alert["acknowledgedBy"] = str(row["acknowledged_by"])
        if not is_missing(row.get("acknowledged_at_s")):
            alert["acknowledgedAt"] = iso_utc(row["acknowledged_at_s"])
    return alert


def alert_details(row: Mapping[str, Any], now_s: float | None = None) -> dict[str, Any]:
    """The spec's Alert plus what the Alerts page shows besides: library, silence, acknowledged until."""
    alert = alert_dict(row, now_s)
    until_s = row.get("acknowledged_until_s")
    alert["library"] = None if is_missing(row.get("library")) else str(row["library"])
    alert["silencedBy"] = None if is_missing(row.get("silenced_by")) else int(row["silenced_by"])
    alert["acknowledgedUntil"] = iso_utc(until_s) if alert["acknowledged"] and not is_missing(until_s) else None
    return alert


def acknowledged_now(now_s: float):
    """SQL condition: the acknowledgement holds at `now_s`."""
    return and_(alerts.c.acknowledged.is_(True),
                or_(alerts.c.acknowledged_until_s.is_(None), alerts.c.acknowledged_until_s > now_s))


def _conditions(*, severity: str | None, queue_name: str | None, acknowledged: bool | None, open_only: bool,
                since_s: float | None, until_s: float | None, types: Iterable[str] | None = None,
                now_s: float | None = None):
    condition = true()
    if types is not None:
        condition = and_(condition, alerts.c.alert_type.in_(list(types)))
    if open_only:
        condition = and_(condition, alerts.c.resolved_at_s.is_(None))
    if severity:
        condition = and_(condition, alerts.c.severity == severity)
    if queue_name:
        condition = and_(condition, alerts.c.queue_name == queue_name)
    if acknowledged is not None:
        held = acknowledged_now(time.time() if now_s is None else now_s)
        condition = and_(condition, held if acknowledged else not_(held))
    if until_s is not None:
        condition = and_(condition, alerts.c.opened_at_s <= until_s)
    if since_s is not None:
        condition = and_(condition, or_(alerts.c.resolved_at_s.is_(None), alerts.c.resolved_at_s >= since_s))
    return condition


def list_alerts(engine: Engine, *, severity: str | None = None, queue_name: str | None = None,
                acknowledged: bool | None = False, open_only: bool = True, since_s: float | None = None,
                until_s: float | None = None, limit: int = 500, types: Iterable[str] | None = SPEC_TYPES,
                details: bool = False) -> list[dict[str, Any]]:
    """Alerts in the spec's shape, critical first, then newest; by default open, unacknowledged (as the spec),
    of the spec's five types.

    acknowledged=None returns both; open_only=False adds resolved alerts whose lifetime overlaps the range;
    types=None adds system alerts; details adds the page's fields (see alert_details).
    """
    now_s = time.time()
    statement = (select(alerts)
                 .where(_conditions(severity=severity, queue_name=queue_name, acknowledged=acknowledged,
                                    open_only=open_only, since_s=since_s, until_s=until_s, types=types,
                                    now_s=now_s))
                 .order_by((alerts.c.severity == "critical").desc(), alerts.c.opened_at_s.desc(), alerts.c.id)
                 .limit(limit))
    shape = alert_details if details else alert_dict
    with reading(engine) as conn:
        return [shape(row, now_s) for row in conn.execute(statement).mappings()]


def get_alert(engine: Engine, alert_id: str) -> dict[str, Any] | None:
    """One alert in the spec's shape; None if the id is unknown."""
    with reading(engine) as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    return alert_dict(row) if row is not None else None


def alert_history(engine: Engine, *, since_s: float | None = None, until_s: float | None = None,
                  severity: str | None = None, queue_name: str | None = None,
                  acknowledged: bool | None = None, open_only: bool = False,
                  limit: int = 5000) -> pd.DataFrame:
    """Alerts (open and resolved) whose lifetime overlaps the range, newest first, with state and times."""
    statement = (select(*[alerts.c[name] for name in ALERT_HISTORY_COLUMNS])
                 .where(_conditions(severity=severity, queue_name=queue_name, acknowledged=acknowledged,
                                    open_only=open_only, since_s=since_s, until_s=until_s))
                 .order_by(alerts.c.opened_at_s.desc(), alerts.c.id).limit(limit))
    with reading(engine) as conn:
        rows = frame(conn, statement, ALERT_HISTORY_COLUMNS)
    now_s = time.time()
    rows["acknowledged"] = [acknowledgement_holds(row, now_s) for row in rows.to_dict("records")]
    rows["silenced"] = [not is_missing(v) for v in rows["silenced_by"]]
    rows["state"] = ["open" if is_missing(at) else "resolved" for at in rows["resolved_at_s"]]
    for name in ("opened", "updated", "resolved", "acknowledged"):
        rows[f"{name}_at"] = utc_times(rows[f"{name}_at_s"])
    return rows


def alert_events_frame(engine: Engine, *, alert_id: str | None = None, since_s: float | None = None,
                       until_s: float | None = None, limit: int = 5000) -> pd.DataFrame:
    """Alert events (opened, escalated, deescalated, acknowledged, resolved), newest first."""
    e = alert_events
    condition = true()
    if alert_id is not None:
        condition = and_(condition, e.c.alert_id == alert_id)
    if since_s is not None:
        condition = and_(condition, e.c.at_s >= since_s)
    if until_s is not None:
        condition = and_(condition, e.c.at_s <= until_s)
    columns = ["alert_id", "at_s", "event", "severity", "value", "actor"]
    statement = (select(*[e.c[name] for name in columns]).where(condition)
                 .order_by(e.c.at_s.desc(), e.c.id.desc()).limit(limit))
    with reading(engine) as conn:
        rows = frame(conn, statement, columns)
    rows["at"] = utc_times(rows["at_s"])
    return rows


def open_alert_counts(engine: Engine) -> list[tuple[str, str, str, int]]:
    """(queue, type, severity, count) of the alerts open now."""
    statement = (select(alerts.c.queue_name, alerts.c.alert_type, alerts.c.severity, func.count())
                 .where(alerts.c.resolved_at_s.is_(None))
                 .group_by(alerts.c.queue_name, alerts.c.alert_type, alerts.c.severity))
    with reading(engine) as conn:
        return [tuple(row) for row in conn.execute(statement)]


PENDING_COLUMNS = ["queue_name", "alert_type", "severity", "message", "value", "threshold", "pending_since_s",
                   "library"]


def pending_breaches(engine: Engine) -> pd.DataFrame:
    """Breaches that have not held for pending_s yet (no alert), oldest first, with `pending_since`."""
    s = alert_rule_states
    statement = (select(*[s.c[name] for name in PENDING_COLUMNS]).where(s.c.pending_since_s.is_not(None))
                 .order_by(s.c.pending_since_s, s.c.queue_name, s.c.alert_type))
    with reading(engine) as conn:
        rows = frame(conn, statement, PENDING_COLUMNS)
    rows["pending_since"] = utc_times(rows["pending_since_s"])
    return rows
