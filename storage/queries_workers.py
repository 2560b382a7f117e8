"""Worker and host reads: latest state per worker with recycle flags, WorkerMemoryState, memory series."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, func, select

from core.health import Thresholds
from storage.queries_common import (
    CURRENT_WITHIN_S, MAX_POINTS, bucket_index, bucket_width_s, frame, is_missing, iso_utc, latest_rows,
    reading, utc_times,
)
from core.recycle import recycle_verdict
from storage.schema import host_snapshots, worker_snapshots

WORKER_COLUMNS = [c for c in worker_snapshots.c if c.name not in ("id", "cycle_id")]
MEMORY_STATS_FIELDS: tuple[tuple[str, str], ...] = (
    ("heapUsed", "heap_used_mb"), ("heapTotal", "heap_total_mb"), ("external", "external_mb"),
    ("rss", "rss_mb"),
    ("arrayBuffers", "array_buffers_mb"), ("percentage", "memory_percentage"),
)


def queues_of(raw: Any) -> list[str]:
    """The worker's queue names (stored comma-separated)."""
    if is_missing(raw) or not str(raw).strip():
        return []
    return [name.strip() for name in str(raw).split(",") if name.strip()]


def _known(value: Any) -> float | None:
    return None if is_missing(value) else float(value)


def worker_table(engine: Engine, thresholds: Thresholds, *, seen_since_s: float | None = None,
                 current_within_s: float = CURRENT_WITHIN_S,
                 libraries: Sequence[str] | None = None) -> pd.DataFrame:
    """Newest row per worker seen since `seen_since_s`, with display state, uptime and recycle flags.

    `libraries` keeps the workers of those libraries only (None or empty: all).

    `status` is "stale" when the worker's heartbeat expired (alive false), "gone" when it is no longer
    reported (newest row more than `current_within_s` older than the newest worker row), else the worker's
    own state.
    should_recycle/recycle_reason are recomputed by core.recycle with the thresholds of the worker's first
    queue, so they follow the current configuration.
    """
    t = worker_snapshots
    statement = latest_rows(t, "worker_name", "sampled_at_s", WORKER_COLUMNS)
    if seen_since_s is not None:
        statement = statement.where(t.c.sampled_at_s >= seen_since_s)
    if libraries:
        statement = statement.where(t.c.library.in_(list(libraries)))
    with reading(engine) as conn:
        rows = frame(conn, statement, [c.name for c in WORKER_COLUMNS])
        newest_s = conn.execute(select(func.max(t.c.sampled_at_s))).scalar()
    extra = ["current", "status", "uptime_s", "started", "last_heartbeat", "last_seen"]
    if rows.empty:
        return pd.DataFrame(columns=[c.name for c in WORKER_COLUMNS] + extra)
    rows["alive"] = rows["alive"].astype(bool)
    rows["current"] = rows["sampled_at_s"] >= float(newest_s) - current_within_s
    rows["status"] = np.where(~rows["current"], "gone", np.where(~rows["alive"], "stale", rows["state"]))
    rows["uptime_s"] = rows["sampled_at_s"] - rows["birth_at_s"].astype("float64")
    rows["started"] = utc_times(rows["birth_at_s"])
    rows["last_heartbeat"] = utc_times(rows["last_heartbeat_at_s"])
    rows["last_seen"] = utc_times(rows["sampled_at_s"])
    verdicts = [
        recycle_verdict(int(row["jobs_processed"]), _known(row["uptime_s"]), _known(row["rss_mb"]),
                        thresholds.for_queue((queues_of(row["queues"]) or [""])[0]))
        for row in rows.to_dict("records")
    ]
    rows["should_recycle"] = [v[0] for v in verdicts]
    rows["recycle_reason"] = [v[1] for v in verdicts]
    return rows.sort_values(["current", "worker_name"], ascending=[False, True]).reset_index(drop=True)


def memory_stats(row: dict[str, Any]) -> dict[str, Any]:
    """The spec's MemoryStats of one worker row (unmeasured figures as 0)."""
    stats = {field: 0.0 if is_missing(row.get(column)) else float(row[column])
             for field, column in MEMORY_STATS_FIELDS}
    stats["timestamp"] = iso_utc(row["sampled_at_s"])
    return stats


def worker_memory_state(row: dict[str, Any]) -> dict[str, Any]:
    """The spec's WorkerMemoryState of one worker_table row."""
    state = {
        "workerId": str(row["worker_name"]),
        "queueName": ",".join(queues_of(row["queues"])),
        "jobsProcessed": int(row["jobs_processed"]),
        "startTime": iso_utc(row["birth_at_s"]),
        "lastMemoryCheck": memory_stats(row),
        "shouldRecycle": bool(row["should_recycle"]),
    }
    if not is_missing(row["recycle_reason"]) and row["recycle_reason"]:
        state["recycleReason"] = str(row["recycle_reason"])
    return state


def worker_memory_summary(engine: Engine, thresholds: Thresholds) -> dict[str, Any]:
    """The spec's WorkerMemorySummary over the workers currently reported."""
    rows = worker_table(engine, thresholds)
    if not rows.empty:
        rows = rows[rows["current"]]
    measured = rows["rss_mb"].dropna().astype("float64") if not rows.empty else pd.Series(dtype="float64")
    records = rows.to_dict("records")
    return {
        "totalWorkers": len(records),
        "totalJobsProcessed": int(sum(int(r["jobs_processed"]) for r in records)),
        "averageMemoryUsage": round(float(measured.mean()), 1) if not measured.empty else 0.0,
        "workersNeedingRecycle": int(sum(bool(r["should_recycle"]) for r in records)),
        "workers": [worker_memory_state(r) for r in records],
    }


def measured_buckets(engine: Engine, since_s: float, until_s: float, max_points: int,
                     worker_names: Sequence[str] | None = None, libraries: Sequence[str] | None = None):
    """(bucket width in s, labelled bucket index, condition) for the worker rows in the range whose RSS was
    measured, of these workers (None: all) and libraries (None or empty: all)."""
    t = worker_snapshots
    width_s = bucket_width_s(until_s - since_s, max_points)
    bucket = bucket_index(engine, t.c.sampled_at_s, width_s).label("bucket")
    condition = and_(t.c.sampled_at_s >= since_s, t.c.sampled_at_s <= until_s, t.c.rss_mb.is_not(None))
    if worker_names is not None:
        condition = and_(condition, t.c.worker_name.in_(list(worker_names)))
    if libraries:
        condition = and_(condition, t.c.library.in_(list(libraries)))
    return width_s, bucket, condition


def worker_memory_series(engine: Engine, since_s: float, until_s: float, *, max_points: int = MAX_POINTS,
                         worker_names: Sequence[str] | None = None,
                         libraries: Sequence[str] | None = None) -> pd.DataFrame:
    """Peak RSS (MB) per worker per time bucket: worker_name, bucket_start_s, time, rss_mb, samples.

    Only measured rows count (unknown memory is left out, never 0); `libraries` keeps their workers only.
    """
    t = worker_snapshots
    width_s, bucket, condition = measured_buckets(engine, since_s, until_s, max_points, worker_names,
                                                  libraries)
    statement = (select(t.c.worker_name, bucket, func.max(t.c.rss_mb).label("rss_mb"),
                        func.count().label("samples"))
                 .where(condition).group_by(t.c.worker_name, bucket).order_by(t.c.worker_name, bucket))
    with reading(engine) as conn:
        rows = frame(conn, statement, ["worker_name", "bucket", "rss_mb", "samples"])
    rows["bucket_start_s"] = rows["bucket"].astype("float64") * width_s
    rows["time"] = utc_times(rows["bucket_start_s"])
    rows["rss_mb"] = rows["rss_mb"].astype("float64")
    rows.attrs["bucket_width_s"] = width_s
    return rows[["worker_name", "bucket_start_s", "time", "rss_mb", "samples"]]


HOST_FIGURES = ("total_mb", "used_mb", "available_mb", "cached_mb", "swap_used_mb", "percentage",
                "workers_rss_mb", "collector_rss_mb")


def host_memory_series(engine: Engine, since_s: float, until_s: float, *,
                       max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Host memory per time bucket (averaged over the bucket): hostname, bucket_start_s, time, *_mb."""
    t = host_snapshots
    width_s = bucket_width_s(until_s - since_s, max_points)
    bucket = bucket_index(engine, t.c.sampled_at_s, width_s).label("bucket")
    statement = (select(t.c.hostname, bucket, *[func.avg(t.c[name]).label(name) for name in HOST_FIGURES])
                 .where(and_(t.c.sampled_at_s >= since_s, t.c.sampled_at_s <= until_s))
                 .group_by(t.c.hostname, bucket).order_by(t.c.hostname, bucket))
    with reading(engine) as conn:
        rows = frame(conn, statement, ["hostname", "bucket", *HOST_FIGURES])
    rows["bucket_start_s"] = rows["bucket"].astype("float64") * width_s
    rows["time"] = utc_times(rows["bucket_start_s"])
    rows = rows.astype({name: "float64" for name in HOST_FIGURES})
    rows.attrs["bucket_width_s"] = width_s
    return rows[["hostname", "bucket_start_s", "time", *HOST_FIGURES]]
