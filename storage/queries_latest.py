"""Reads of the present: queues, newest snapshot per queue, QueueMetrics, QueueHealthStatus, summary.

A queue is a (library, queue_name) pair: an RQ queue and a Celery queue may share a name and are two queues.
Every function taking a queue name also takes `library=None`, meaning whichever library wrote that name.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Mapping, Sequence

import pandas as pd
from sqlalchemy import Connection, Engine, Select, and_, func, not_, select

from storage.fields import QUEUE_METRICS_FIELDS, ZERO_WHEN_UNKNOWN
from storage.queries_alerts import SPEC_TYPES, acknowledged_now
from storage.layout import legacy_columns, latest_select, samples_join, series_condition, series_of
from storage.queries_common import CURRENT_WITHIN_S, frame, is_missing, iso_utc, reading, utc_times
from storage.schema import alerts, queue_latest, queue_samples, series

_INT_FIELDS = frozenset({"waiting", "active", "delayed", "failed", "completed"})
# A library writing a queue name that another library wrote later is found if it wrote it this recently.
SHARED_NAME_WITHIN_S = 3600.0
SYSTEM_WINDOW_S = 300.0  # the rate window of the queues' own error rates
SNAPSHOT_COLUMNS = legacy_columns(queue_latest, with_cursors=True)
"""The newest snapshot's columns (no sketches), under the names of the snapshot view."""
SNAPSHOT_NAMES = [c.name for c in SNAPSHOT_COLUMNS]
HISTORY_COLUMNS = legacy_columns(queue_samples)


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


def latest_queue_rows(conn: Connection, *,
                      shared_name_within_s: float = SHARED_NAME_WITHIN_S) -> pd.DataFrame:
    """The newest row per (library, queue_name) from queue_latest, ordered by queue name then library.

    Every name is listed with the library of its newest row, and other libraries' rows of that name when
    written within `shared_name_within_s` of the newest snapshot: a library that stopped writing a name that
    another library still writes is listed for that long only.
    """
    rows = frame(conn, latest_select().order_by(series.c.queue_name, series.c.library), SNAPSHOT_NAMES)
    if rows.empty:
        return rows
    newest_at_s = float(rows["sampled_at_s"].max())
    newest_of_name = rows.sort_values(["queue_name", "sampled_at_s", "cycle_id"]).groupby("queue_name").tail(1)
    kept = rows.index.isin(newest_of_name.index) | (rows["sampled_at_s"] >= newest_at_s - shared_name_within_s)
    return rows[kept].reset_index(drop=True)


def mark_current(rows: pd.DataFrame, current_within_s: float | None = CURRENT_WITHIN_S) -> pd.Series:
    """Per newest-snapshot row: whether its library still reports the queue.

    A queue is current when its newest snapshot is from the newest cycle that stored its library's queues
    and within `current_within_s` of the newest snapshot; otherwise it is stale (None: every queue is current).
    """
    if rows.empty or current_within_s is None:
        return pd.Series(True, index=rows.index, dtype=bool)
    newest_cycle = rows.groupby("library")["cycle_id"].transform("max")
    recent = rows["sampled_at_s"] >= rows["sampled_at_s"].max() - current_within_s
    return (rows["cycle_id"] == newest_cycle) & recent


def queue_list(engine: Engine, *, libraries: Sequence[str] | None = None) -> pd.DataFrame:
    """Every queue recorded (see latest_queue_rows): queue_name, library, last_seen_at_s, last_seen (UTC),
    current (see mark_current).

    Sorted by name then library; `libraries` keeps those libraries' queues only (None or empty: all).
    """
    with reading(engine) as conn:
        rows = latest_queue_rows(conn)
    columns = ["queue_name", "library", "sampled_at_s", "cycle_id"]
    rows = rows[columns] if not rows.empty else pd.DataFrame(columns=columns)
    rows["current"] = mark_current(rows)
    rows = rows.rename(columns={"sampled_at_s": "last_seen_at_s"})
    if libraries:
        rows = rows[rows["library"].isin(list(libraries))].reset_index(drop=True)
    rows["last_seen"] = utc_times(rows["last_seen_at_s"])
    return rows.drop(columns="cycle_id")


def queue_names(engine: Engine, *, libraries: Sequence[str] | None = None) -> list[str]:
    """Names of every queue recorded, sorted; `libraries` keeps those libraries' queues only."""
    if libraries:
        return sorted(set(queue_list(engine, libraries=libraries)["queue_name"]))
    statement = latest_select([series.c.queue_name]).distinct().order_by(series.c.queue_name)
    with reading(engine) as conn:
        return [name for (name,) in conn.execute(statement)]


def queue_exists(engine: Engine, queue_name: str, *, library: str | None = None) -> bool:
    """True if at least one snapshot of this queue (of this library, or of any) is stored."""
    statement = latest_select([queue_latest.c.series_id]).where(series_condition(queue_name, library)).limit(1)
    with reading(engine) as conn:
        return conn.execute(statement).first() is not None


def newest_sample_at_s(engine: Engine) -> float | None:
    """Time of the newest queue snapshot, None for an empty database."""
    with reading(engine) as conn:
        newest_ms = conn.execute(select(func.max(queue_latest.c.sampled_at_ms))).scalar()
    return None if newest_ms is None else newest_ms / 1000.0


def latest_snapshots(engine: Engine, *, current_within_s: float | None = CURRENT_WITHIN_S) -> pd.DataFrame:
    """Newest snapshot per (library, queue) (no sketches), plus `current` (see mark_current)."""
    with reading(engine) as conn:
        rows = latest_queue_rows(conn)
    if rows.empty:
        rows["current"] = pd.Series(dtype=bool)
        return rows
    rows["current"] = mark_current(rows, current_within_s)
    return rows.reset_index(drop=True)


def latest_snapshot(engine: Engine, queue_name: str, *, library: str | None = None) -> dict[str, Any] | None:
    """The queue's newest snapshot row (no sketches) as a dict; None for an unknown queue."""
    statement = (latest_select().where(series_condition(queue_name, library))
                 .order_by(queue_latest.c.sampled_at_ms.desc(), queue_latest.c.cycle_id.desc()).limit(1))
    with reading(engine) as conn:
        row = conn.execute(statement).mappings().first()
    return dict(row) if row is not None else None


def health_statuses(engine: Engine, *, current_only: bool = True) -> list[dict[str, Any]]:
    """QueueHealthStatus of every current queue (the spec's QueuesHealthResponse)."""
    rows = latest_snapshots(engine)
    if current_only and not rows.empty:
        rows = rows[rows["current"]]
    return [queue_health(row) for row in rows.to_dict("records")]


def current_queue_metrics(engine: Engine, queue_name: str, *,
                          library: str | None = None) -> dict[str, Any] | None:
    """QueueMetrics of the queue's newest snapshot; None for an unknown queue."""
    history = queue_metrics_history(engine, queue_name, limit=1, library=library)
    return history[0] if history else None


def newest_of_series(conn: Connection, ids: Sequence[int], statement: Select, limit: int,
                     time_column: str = "sampled_at_s") -> list[dict[str, Any]]:
    """The newest `limit` rows over several series: `statement` (newest first) read per series, then merged."""
    rows: list[dict[str, Any]] = []
    for series_id in ids:
        rows += [dict(row) for row in conn.execute(
            statement.where(queue_samples.c.series_id == series_id).limit(limit)).mappings()]
    rows.sort(key=lambda row: -row[time_column])
    return rows[:limit]


def queue_metrics_history(engine: Engine, queue_name: str, limit: int = 100, *,
                          library: str | None = None) -> list[dict[str, Any]]:
    """QueueMetrics of the queue's newest `limit` snapshots, newest first (empty for an unknown queue)."""
    statement = (select(*HISTORY_COLUMNS).select_from(samples_join())
                 .order_by(queue_samples.c.sampled_at_ms.desc()))
    with reading(engine) as conn:
        rows = newest_of_series(conn, series_of(conn, queue_name, library), statement, max(1, int(limit)))
    return [queue_metrics(row) for row in rows]


def open_alert_count(engine: Engine, *, acknowledged: bool | None = False) -> int:
    """Alerts of the spec's types not yet resolved; by default only those whose acknowledgement (if any) does
    not hold now."""
    condition = and_(alerts.c.resolved_at_s.is_(None), alerts.c.alert_type.in_(SPEC_TYPES))
    if acknowledged is not None:
        held = acknowledged_now(time.time())
        condition = and_(condition, held if acknowledged else not_(held))
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(alerts).where(condition)).scalar_one())


def measured(rows: pd.DataFrame, field: str, column: str) -> pd.Series:
    """The column's values of the rows whose backend measured `field` (a QueueMetrics name)."""
    if rows.empty or "unavailable" not in rows:
        return rows[column] if column in rows else pd.Series(dtype="float64")
    names = "," + rows["unavailable"].fillna("").astype(str).str.replace(" ", "") + ","
    return rows.loc[~names.str.contains(f",{field},", regex=False), column]


def dashboard_summary(engine: Engine, *, current_within_s: float | None = CURRENT_WITHIN_S) -> dict[str, Any]:
    """The spec's DashboardSummary over the current queues' newest snapshots.

    activeAlerts counts open (unresolved) alerts that nobody has acknowledged, as the spec's alert list does
    by default. Totals and the plain means over queues (avgJobsPerMinute, avgErrorRate) leave out queues
    whose backend cannot measure the figure (a Celery queue's failed count, its rates without task events);
    timestamp is the newest snapshot's.
    """
    rows = latest_snapshots(engine, current_within_s=current_within_s)
    if not rows.empty:
        rows = rows[rows["current"]]
    status_counts = rows["status"].value_counts() if not rows.empty else pd.Series(dtype=int)
    waiting, active, failed = (measured(rows, f, f) for f in ("waiting", "active", "failed"))
    per_minute = measured(rows, "jobsPerMinute", "jobs_per_minute")
    error_rate = measured(rows, "errorRate", "error_rate_pct")
    return {
        "totalQueues": int(len(rows)),
        "healthyQueues": int(status_counts.get("healthy", 0)),
        "warningQueues": int(status_counts.get("warning", 0)),
        "criticalQueues": int(status_counts.get("critical", 0)),
        "totalWaiting": int(waiting.sum()) if not waiting.empty else 0,
        "totalActive": int(active.sum()) if not active.empty else 0,
        "totalFailed": int(failed.sum()) if not failed.empty else 0,
        "activeAlerts": open_alert_count(engine, acknowledged=False),
        "avgJobsPerMinute": round(float(per_minute.mean()), 2) if not per_minute.empty else 0.0,
        "avgErrorRate": round(float(error_rate.mean()), 2) if not error_rate.empty else 0.0,
        "timestamp": iso_utc(rows["sampled_at_s"].max()) if not rows.empty else None,
    }


def system_figures(engine: Engine, *, latest: pd.DataFrame | None = None,
                   window_s: float = SYSTEM_WINDOW_S) -> dict[str, float | None]:
    """The whole system's own figures beside the spec's per-queue means, over the current queues.

    jobsPerMinute: the sum of the queues' jobs per minute (those that measure it); errorRate: failed jobs as %
    of all jobs that ended in the last `window_s` on every queue (None when none ended); endedJobs: that count.
    `latest`: latest_snapshots(engine) when the caller has already read it.
    """
    rows = latest_snapshots(engine) if latest is None else latest
    if rows.empty:
        return {"jobsPerMinute": None, "errorRate": None, "endedJobs": 0}
    rows = rows[rows["current"]]
    per_minute = measured(rows, "jobsPerMinute", "jobs_per_minute")
    t = queue_samples
    after_ms = math.floor((float(rows["sampled_at_s"].max()) - window_s) * 1000.0 + 1e-6)
    statement = (select(func.coalesce(func.sum(t.c.failed_delta), 0),
                        func.coalesce(func.sum(t.c.finished_delta + t.c.failed_delta), 0))
                 .where(and_(t.c.series_id.in_(select(series.c.id)), t.c.sampled_at_ms > after_ms)))
    with reading(engine) as conn:
        failed, ended = conn.execute(statement).one()
    return {"jobsPerMinute": round(float(per_minute.sum()), 2) if not per_minute.empty else None,
            "errorRate": round(float(failed) / float(ended) * 100.0, 2) if ended else None,
            "endedJobs": int(ended)}
