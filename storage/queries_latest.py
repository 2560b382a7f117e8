"""Reads of the present: queues, newest snapshot per queue, QueueMetrics, QueueHealthStatus, summary."""
from __future__ import annotations

import json
from typing import Any, Mapping

import pandas as pd
from sqlalchemy import Engine, and_, func, select

from storage.fields import QUEUE_METRICS_FIELDS, ZERO_WHEN_UNKNOWN
from storage.queries_common import (
    CURRENT_WITHIN_S, frame, is_missing, iso_utc, latest_per_key, latest_rows, reading, utc_times,
)
from storage.schema import alerts, queue_snapshots

_INT_FIELDS = frozenset({"waiting", "active", "delayed", "failed", "completed"})
SNAPSHOT_COLUMNS = [c for c in queue_snapshots.c
                    if c.name not in ("processing_sketch", "wait_sketch", "recent_processing_ms")]


def queue_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's QueueMetrics for one snapshot row (keys in the spec's order)."""
    metrics: dict[str, Any] = {}
    for field, column in QUEUE_METRICS_FIELDS:
        value = row[column]
        if field == "timestamp":
            metrics[field] = iso_utc(value)
        elif field == "queueName":
            metrics[field] = str(value)
        elif is_missing(value):
            metrics[field] = 0.0 if field in ZERO_WHEN_UNKNOWN else None
        elif field in _INT_FIELDS:
            metrics[field] = int(value)
        else:
            metrics[field] = float(value)
    return metrics


def issues_of(row: Mapping[str, Any]) -> list[str]:
    """The snapshot's health issues (stored as a JSON list)."""
    raw = row.get("issues")
    if is_missing(raw) or raw == "":
        return []
    return [str(issue) for issue in json.loads(raw)]


def unavailable_of(row: Mapping[str, Any]) -> list[str]:
    """QueueMetrics fields the backend could not measure for this snapshot (stored comma-separated)."""
    raw = row.get("unavailable")
    if is_missing(raw) or not str(raw).strip():
        return []
    return [name.strip() for name in str(raw).split(",") if name.strip()]


def queue_health(row: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's QueueHealthStatus for one snapshot row."""
    status = str(row["status"])
    return {
        "queueName": str(row["queue_name"]),
        "healthy": status == "healthy",
        "status": status,
        "issues": issues_of(row),
        "metrics": queue_metrics(row),
        "timestamp": iso_utc(row["sampled_at_s"]),
    }


def queue_list(engine: Engine) -> pd.DataFrame:
    """Every queue ever recorded: queue_name, library, last_seen_at_s, last_seen (UTC), sorted by name."""
    t = queue_snapshots
    with reading(engine) as conn:
        rows = frame(conn, latest_rows(t, "queue_name", "sampled_at_s",
                                       [t.c.queue_name, t.c.library, t.c.sampled_at_s]),
                     ["queue_name", "library", "last_seen_at_s"])
    rows["last_seen"] = utc_times(rows["last_seen_at_s"])
    return rows


def queue_names(engine: Engine) -> list[str]:
    """Names of every queue ever recorded, sorted."""
    t = queue_snapshots
    with reading(engine) as conn:
        return [name for name, _ in conn.execute(latest_per_key(t, "queue_name", "sampled_at_s"))]


def queue_exists(engine: Engine, queue_name: str) -> bool:
    """True if at least one snapshot of this queue is stored."""
    t = queue_snapshots
    with reading(engine) as conn:
        return conn.execute(select(t.c.id).where(t.c.queue_name == queue_name).limit(1)).first() is not None


def newest_sample_at_s(engine: Engine) -> float | None:
    """Time of the newest queue snapshot, None for an empty database."""
    with reading(engine) as conn:
        return conn.execute(select(func.max(queue_snapshots.c.sampled_at_s))).scalar()


def latest_snapshots(engine: Engine, *, current_within_s: float | None = CURRENT_WITHIN_S) -> pd.DataFrame:
    """Newest snapshot per queue (no sketches), plus `current`: seen within `current_within_s` of the newest.

    With current_within_s=None every queue counts as current.
    """
    t = queue_snapshots
    with reading(engine) as conn:
        rows = frame(conn, latest_rows(t, "queue_name", "sampled_at_s", SNAPSHOT_COLUMNS),
                     [c.name for c in SNAPSHOT_COLUMNS])
    if rows.empty:
        rows["current"] = pd.Series(dtype=bool)
        return rows
    newest_s = rows["sampled_at_s"].max()
    if current_within_s is None:
        rows["current"] = True
    else:
        rows["current"] = rows["sampled_at_s"] >= newest_s - current_within_s
    return rows.reset_index(drop=True)


def health_statuses(engine: Engine, *, current_only: bool = True) -> list[dict[str, Any]]:
    """QueueHealthStatus of every current queue (the spec's QueuesHealthResponse)."""
    rows = latest_snapshots(engine)
    if current_only and not rows.empty:
        rows = rows[rows["current"]]
    return [queue_health(row) for row in rows.to_dict("records")]


def current_queue_metrics(engine: Engine, queue_name: str) -> dict[str, Any] | None:
    """QueueMetrics of the queue's newest snapshot; None for an unknown queue."""
    history = queue_metrics_history(engine, queue_name, limit=1)
    return history[0] if history else None


def queue_metrics_history(engine: Engine, queue_name: str, limit: int = 100) -> list[dict[str, Any]]:
    """QueueMetrics of the queue's newest `limit` snapshots, newest first (empty for an unknown queue)."""
    t = queue_snapshots
    statement = (select(*SNAPSHOT_COLUMNS).where(t.c.queue_name == queue_name)
                 .order_by(t.c.sampled_at_s.desc()).limit(max(1, int(limit))))
    with reading(engine) as conn:
        return [queue_metrics(row) for row in conn.execute(statement).mappings()]


def open_alert_count(engine: Engine, *, acknowledged: bool | None = False) -> int:
    """Alerts not yet resolved; by default only those nobody has acknowledged."""
    condition = alerts.c.resolved_at_s.is_(None)
    if acknowledged is not None:
        condition = and_(condition, alerts.c.acknowledged.is_(acknowledged))
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(alerts).where(condition)).scalar_one())


def dashboard_summary(engine: Engine, *, current_within_s: float | None = CURRENT_WITHIN_S) -> dict[str, Any]:
    """The spec's DashboardSummary over the current queues' newest snapshots.

    activeAlerts counts open (unresolved) alerts that nobody has acknowledged, as the spec's alert list does
    by default. avgJobsPerMinute and avgErrorRate are plain means over queues; timestamp is the newest
    snapshot's.
    """
    rows = latest_snapshots(engine, current_within_s=current_within_s)
    if not rows.empty:
        rows = rows[rows["current"]]
    status_counts = rows["status"].value_counts() if not rows.empty else pd.Series(dtype=int)
    return {
        "totalQueues": int(len(rows)),
        "healthyQueues": int(status_counts.get("healthy", 0)),
        "warningQueues": int(status_counts.get("warning", 0)),
        "criticalQueues": int(status_counts.get("critical", 0)),
        "totalWaiting": int(rows["waiting"].sum()) if not rows.empty else 0,
        "totalActive": int(rows["active"].sum()) if not rows.empty else 0,
        "totalFailed": int(rows["failed"].sum()) if not rows.empty else 0,
        "activeAlerts": open_alert_count(engine, acknowledged=False),
        "avgJobsPerMinute": round(float(rows["jobs_per_minute"].mean()), 2) if not rows.empty else 0.0,
        "avgErrorRate": round(float(rows["error_rate_pct"].mean()), 2) if not rows.empty else 0.0,
        "timestamp": iso_utc(rows["sampled_at_s"].max()) if not rows.empty else None,
    }
