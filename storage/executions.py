"""The spec's ExecutionStatsResponse: processing-time figures over all stored history of a queue."""
from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import Engine, select

from storage.layout import samples_join, series_of
from storage.queries_common import reading
from storage.queries_latest import newest_of_series
from storage.queries_series import range_sketches, sketch_summary
from storage.schema import queue_sample_blobs, queue_samples

RECENT_EXECUTIONS = 100
_SNAPSHOTS_SCANNED = 2000  # newest snapshots searched for the last 100 executions


def recent_executions(engine: Engine, queue_name: str, limit: int = RECENT_EXECUTIONS) -> list[float]:
    """Processing times (ms) of the queue's newest executions, newest first."""
    t, b = queue_samples, queue_sample_blobs
    statement = (select(b.c.recent_processing_ms, t.c.sampled_at_ms).select_from(samples_join(blobs=True))
                 .where(t.c.finished_delta + t.c.failed_delta > 0).order_by(t.c.sampled_at_ms.desc()))
    found: list[float] = []
    with reading(engine) as conn:
        rows = newest_of_series(conn, series_of(conn, queue_name, None), statement, _SNAPSHOTS_SCANNED,
                                "sampled_at_ms")
    for row in rows:
        found.extend(json.loads(row["recent_processing_ms"] or "[]"))
        if len(found) >= limit:
            break
    return found[:limit]


def execution_stats(engine: Engine, queue_name: str) -> dict[str, Any]:
    """sampleCount, min/max/avg/p50/p95/p99 (ms, 0 when nothing ran) and the last 100 executions."""
    processing, _ = range_sketches(engine, queue_name, -math.inf, math.inf)
    summary = sketch_summary(processing)
    figures = {key: 0.0 if summary[key] is None else round(float(summary[key]), 3)
               for key in ("min", "max", "avg", "p50", "p95", "p99")}
    return {"queueName": queue_name, "sampleCount": summary["sampleCount"], **figures,
            "recentExecutions": recent_executions(engine, queue_name)}
