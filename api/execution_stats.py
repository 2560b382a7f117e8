"""The spec's ExecutionStatsResponse from the storage's range functions (levels written at ingest).

Figures cover all stored history; the API caches them per queue and cycle (api.cycle_cache), so one
range read serves every request of a cycle.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine

from storage.executions import recent_executions
from storage.queries_series import range_percentiles

FIGURES = ("min", "max", "avg", "p50", "p95", "p99")
AHEAD_S = 86400.0  # the range runs past now, so a snapshot stamped by a host clock slightly ahead counts


def execution_stats(engine: Engine, queue_name: str, *, now_s: float | None = None) -> dict[str, Any]:
    """sampleCount, min/max/avg/p50/p95/p99 (ms, 0 when nothing ran) and the newest 100 executions."""
    now_s = time.time() if now_s is None else now_s
    summary = range_percentiles(engine, queue_name, 0.0, now_s + AHEAD_S)["processing"]
    figures = {key: 0.0 if summary[key] is None else round(float(summary[key]), 3) for key in FIGURES}
    return {"queueName": queue_name, "sampleCount": summary["sampleCount"], **figures,
            "recentExecutions": recent_executions(engine, queue_name)}
