"""Recent failed jobs (job_failures): stored with each cycle, bounded per queue, read by Queue detail and the API."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, and_, delete, func, select

from core.failures import FailureRecord
from storage.queries_common import reading as _reading
from storage.layout import series_ids
from storage.schema import job_failures, series

DEFAULT_FAILURES_KEPT = 1000
FAILURE_COLUMNS = ("failed_at_s", "job_id", "job_name", "exception_type", "message", "worker", "run_ms")


def write_failures(conn: Connection, records: Sequence[FailureRecord], kept_per_queue: int) -> int:
    """Store a cycle's sampled failures (a job already stored at the same end time is skipped), then keep only
    the newest `kept_per_queue` of each queue that got some; returns the rows added."""
    if not records:
        return 0
    ids = series_ids(conn, {(r.library, r.queue_name) for r in records})
    rows = {}
    for r in records:
        row = {"series_id": ids[(r.library, r.queue_name)], "failed_at_ms": int(round(r.failed_at_s * 1000.0)),
               "job_id": _clean(r.job_id)[:255], "job_name": _clean(r.job_name)[:1000] if r.job_name else None,
               "exception_type": _clean(r.exception_type)[:255], "message": _clean(r.message),
               "traceback": _clean(r.traceback), "worker": _clean(r.worker)[:255] if r.worker else None,
               "run_ms": r.run_ms if r.run_ms is not None and math.isfinite(r.run_ms) else None}
        rows[(row["series_id"], row["job_id"], row["failed_at_ms"])] = row
    known = set()
    for series_id in {key[0] for key in rows}:
        job_ids = [key[1] for key in rows if key[0] == series_id]
        known |= {(series_id, job_id, at_ms) for job_id, at_ms in conn.execute(
            select(job_failures.c.job_id, job_failures.c.failed_at_ms).where(and_(
                job_failures.c.series_id == series_id, job_failures.c.job_id.in_(job_ids))))}
    fresh = [row for key, row in rows.items() if key not in known]
    if fresh:
        conn.execute(job_failures.insert(), fresh)
    for series_id in {row["series_id"] for row in fresh}:
        _keep_newest(conn, series_id, kept_per_queue)
    return len(fresh)


def _clean(text: str | None) -> str | None:
    """The text without NUL, which PostgreSQL refuses in text columns."""
    return text.replace("\x00", "\ufffd") if text else text


def _keep_newest(conn: Connection, series_id: int, kept: int) -> None:
    """Delete a queue's failures beyond its newest `kept`."""
    bound = conn.execute(select(job_failures.c.failed_at_ms, job_failures.c.id)
                         .where(job_failures.c.series_id == series_id)
                         .order_by(job_failures.c.failed_at_ms.desc(), job_failures.c.id.desc())
                         .offset(max(0, kept)).limit(1)).first()
    if bound is None:
        return
    at_ms, row_id = bound
    conn.execute(delete(job_failures).where(and_(
        job_failures.c.series_id == series_id,
        (job_failures.c.failed_at_ms < at_ms) | and_(job_failures.c.failed_at_ms == at_ms,
                                                     job_failures.c.id <= row_id))))


def purge_failures(engine: Engine, cutoff_s: float) -> int:
    """Delete failures older than the retention cut-off."""
    with engine.begin() as conn:
        return conn.execute(delete(job_failures).where(job_failures.c.failed_at_ms < int(cutoff_s * 1000))).rowcount


def _series(library: str, queue_name: str):
    return select(series.c.id).where(and_(series.c.library == library, series.c.queue_name == queue_name))\
        .scalar_subquery()


def recent_failures(engine: Engine, queue_name: str, library: str, since_s: float, until_s: float, *,
                    limit: int = 100) -> pd.DataFrame:
    """The queue's newest failures in [since_s, until_s], newest first, without tracebacks (FAILURE_COLUMNS)."""
    t = job_failures
    query = (select(t.c.id, (t.c.failed_at_ms / 1000.0).label("failed_at_s"), t.c.job_id, t.c.job_name,
                    t.c.exception_type, t.c.message, t.c.worker, t.c.run_ms)
             .where(and_(t.c.series_id == _series(library, queue_name), t.c.failed_at_ms >= int(since_s * 1000),
                         t.c.failed_at_ms <= int(until_s * 1000)))
             .order_by(t.c.failed_at_ms.desc(), t.c.id.desc()).limit(limit))
    with _reading(engine) as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return pd.DataFrame(rows, columns=["id", *FAILURE_COLUMNS])


def failure_counts(engine: Engine, queue_name: str, library: str, since_s: float,
                   until_s: float) -> pd.DataFrame:
    """Stored failures per exception type in [since_s, until_s], most first: exception_type, count, last_s."""
    t = job_failures
    query = (select(t.c.exception_type, func.count().label("count"),
                    (func.max(t.c.failed_at_ms) / 1000.0).label("last_at_s"))
             .where(and_(t.c.series_id == _series(library, queue_name), t.c.failed_at_ms >= int(since_s * 1000),
                         t.c.failed_at_ms <= int(until_s * 1000)))
             .group_by(t.c.exception_type).order_by(func.count().desc(), t.c.exception_type))
    with _reading(engine) as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return pd.DataFrame(rows, columns=["exception_type", "count", "last_at_s"])


def failure_traceback(engine: Engine, failure_id: int) -> dict[str, Any] | None:
    """One stored failure with its traceback."""
    t = job_failures
    with _reading(engine) as conn:
        row = conn.execute(select(t.c.id, t.c.job_id, t.c.exception_type, t.c.message, t.c.traceback)
                           .where(t.c.id == failure_id)).mappings().first()
    return dict(row) if row else None
