"""The spec's ExecutionStatsResponse: processing-time figures over all stored history of a queue."""
from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import Engine, and_, select

from storage.queries_common import reading
from storage.queries_series import range_sketches, sketch_summary
from storage.schema import queue_snapshots

RECENT_EXECUTIONS = 100
_SNAPSHOTS_SCANNED = 2000  # newest snapshots searched for the last 100 executions


def recent_executions(engine: Engine, queue_name: str, limit: int = RECENT_EXECUTIONS) -> list[float]:
    """Processing times (ms) of the queue's newest executions, newest first."""
    t = queue_snapshots
    statement = (select(t.c.recent_processing_ms)
                 .where(and_(t.c.queue_name == queue_name, t.c.finished_delta + t.c.failed_delta > 0))
                 .order_by(t.c.sampled_at_s.desc()).limit(_SNAPSHOTS_SCANNED))
    found: list[float] = []
    with reading(engine) as conn:
        for (raw,) in conn.execute(statement):
            found.extend(json.loads(raw or "[]"))
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
