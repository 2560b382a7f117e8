"""The spec's ExecutionStatsResponse: processing-time figures over all stored history of a queue."""
from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import Engine, select

from storage.layout import samples_join, series_of
from storage.queries_common import reading
from storage.queries_series import range_sketches, sketch_summary
from storage.schema import queue_sample_blobs, queue_samples

RECENT_EXECUTIONS = 100
_SNAPSHOTS_SCANNED = 2000  # newest snapshots searched for the last 100 executions


def recent_executions(engine: Engine, queue_name: str, limit: int = RECENT_EXECUTIONS) -> list[float]:
    """Processing times (ms) of the queue's newest executions, newest first.

    Each series of the name is read newest first only until it alone holds `limit` executions (an older
    snapshot of it could not be among the newest `limit`), at most _SNAPSHOTS_SCANNED snapshots deep."""
    t, b = queue_samples, queue_sample_blobs
    statement = (select(b.c.recent_processing_ms, t.c.sampled_at_ms).select_from(samples_join(blobs=True))
                 .where(t.c.finished_delta + t.c.failed_delta > 0).order_by(t.c.sampled_at_ms.desc()))
    gathered: list[tuple[int, list[float]]] = []
    with reading(engine) as conn:
        for series_id in series_of(conn, queue_name, None):
            held = 0
            result = conn.execute(statement.where(t.c.series_id == series_id).limit(_SNAPSHOTS_SCANNED))
            try:
                for text_value, at_ms in result:  # streamed: a busy queue stops after a few rows
                    values = json.loads(text_value or "[]")
                    gathered.append((int(at_ms), values))
                    held += len(values)
                    if held >= limit:
                        break
            finally:
                result.close()
    gathered.sort(key=lambda item: -item[0])
    found: list[float] = []
    for _, values in gathered:
        found.extend(values)
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
