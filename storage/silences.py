"""Silences as stored: add, list, expire; each write applies the silences in force to the open alerts."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from core.health import AlertType
from core.silences import check_matchers
from core.system_alerts import SYSTEM_TYPES
from storage.alert_state import lock_alerts, refresh_silenced
from storage.engine import StorageError, error_text
from storage.queries_common import iso_utc, reading
from storage.schema import alerts, silences

ALERT_TYPES = tuple(t.value for t in AlertType) + tuple(sorted(SYSTEM_TYPES))
MAX_COMMENT_CHARS = 2000


def silence_dict(row: Any, now_s: float) -> dict[str, Any]:
    """A silences row as the CLI, API and page show it."""
    return {
        "id": int(row["id"]), "queue": row["queue_glob"], "library": row["library"], "type": row["alert_type"],
        "severity": row["severity"], "startsAt": iso_utc(row["starts_at_s"]), "endsAt": iso_utc(row["ends_at_s"]),
        "comment": row["comment"], "createdBy": row["created_by"], "createdAt": iso_utc(row["created_at_s"]),
        "active": row["starts_at_s"] <= now_s < row["ends_at_s"],
    }


def add_silence(engine: Engine, *, duration_s: float, comment: str, now_s: float, queue_glob: str | None = None,
                library: str | None = None, alert_type: str | None = None, severity: str | None = None,
                created_by: str | None = None) -> dict[str, Any]:
    """Store a silence from now for `duration_s`; ValueError for a matcher that matches nothing or no comment."""
    check_matchers(queue_glob=queue_glob, library=library, alert_type=alert_type, severity=severity,
                   known_types=ALERT_TYPES)
    if not comment or not comment.strip():
        raise ValueError("a silence needs a comment (why, and who to ask)")
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
    if not duration_s > 0:
        raise ValueError("a silence must last more than 0 seconds")
    try:
        with engine.begin() as conn:
            lock_alerts(conn)
            silence_id = conn.execute(silences.insert().values(
                queue_glob=queue_glob, library=library, alert_type=alert_type, severity=severity,
                starts_at_s=now_s, ends_at_s=now_s + duration_s, comment=comment.strip(), created_by=created_by,
                created_at_s=now_s)).inserted_primary_key[0]
            refresh_silenced(conn, now_s)
            row = conn.execute(select(silences).where(silences.c.id == silence_id)).mappings().one()
    except SQLAlchemyError as exc:
        raise StorageError(f"could not store the silence: {error_text(exc)}") from exc
    return silence_dict(row, now_s)


def expire_silence(engine: Engine, silence_id: int, now_s: float) -> dict[str, Any] | None:
    """End a silence now (one already over keeps its end); None for an unknown id."""
    try:
        with engine.begin() as conn:
            lock_alerts(conn)
            row = conn.execute(select(silences).where(silences.c.id == silence_id)).mappings().first()
            if row is None:
                return None
            if row["ends_at_s"] > now_s:
                conn.execute(update(silences).where(silences.c.id == silence_id).values(ends_at_s=now_s))
            refresh_silenced(conn, now_s)
            row = conn.execute(select(silences).where(silences.c.id == silence_id)).mappings().one()
    except SQLAlchemyError as exc:
        raise StorageError(f"could not expire the silence: {error_text(exc)}") from exc
    return silence_dict(row, now_s)


def list_silences(engine: Engine, now_s: float, *, include_expired: bool = False,
                  limit: int = 500) -> list[dict[str, Any]]:
    """Silences in force or still to come (with include_expired, the ended ones too), newest first, each with
    the number of open alerts it silences now."""
    statement = select(silences).order_by(silences.c.id.desc()).limit(limit)
    if not include_expired:
        statement = statement.where(silences.c.ends_at_s > now_s)
    with reading(engine) as conn:
        rows = [silence_dict(row, now_s) for row in conn.execute(statement).mappings()]
        silenced = dict(conn.execute(select(alerts.c.silenced_by, func.count()).where(
            alerts.c.resolved_at_s.is_(None), alerts.c.silenced_by.is_not(None)).group_by(alerts.c.silenced_by)).all())
    for row in rows:
        row["silencedAlerts"] = silenced.get(row["id"], 0) if row["active"] else 0
    return rows
