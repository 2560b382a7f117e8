"""MemoryStats of the collector's host and the spec's CurrentMemoryResponse (reads for the API).

For the host the spec's names mean: heapUsed = memory in use (total − available), heapTotal = total memory,
external = page cache and buffers, rss = summed RSS of the live workers on this host, arrayBuffers = swap in
use, percentage = memory in use as % of total (all MB).
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, func, select

from core.health import ThresholdSet
from storage.queries_common import iso_utc
from storage.schema import host_snapshots, worker_snapshots


def host_memory_stats(engine: Engine) -> dict[str, Any]:
    """MemoryStats of the newest host snapshot (zeros before the first cycle)."""
    t = host_snapshots
    with engine.connect() as conn:
        row = conn.execute(select(t).order_by(t.c.sampled_at_s.desc()).limit(1)).mappings().first()
    if row is None:
        return {"heapUsed": 0.0, "heapTotal": 0.0, "external": 0.0, "rss": 0.0, "arrayBuffers": 0.0,
                "percentage": 0.0, "timestamp": iso_utc(time.time())}
    return {"heapUsed": round(row["used_mb"], 1), "heapTotal": round(row["total_mb"], 1),
            "external": round(row["cached_mb"], 1), "rss": round(row["workers_rss_mb"], 1),
            "arrayBuffers": round(row["swap_used_mb"], 1), "percentage": round(row["percentage"], 1),
            "timestamp": iso_utc(row["sampled_at_s"])}


def largest_worker_rss_mb(engine: Engine) -> float:
    """Largest RSS among the workers of the newest cycle that has worker rows (0 if none was measured)."""
    t = worker_snapshots
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(t.c.cycle_id))).scalar()
        if newest is None:
            return 0.0
        values = [v for (v,) in conn.execute(select(t.c.rss_mb).where(t.c.cycle_id == newest)) if v is not None]
    return max(values, default=0.0)


def current_memory(engine: Engine, limits: ThresholdSet) -> dict[str, Any]:
    """Host stats, the memory limits, and where the largest worker and the host stand against them.

    exceedsCritical: a worker's RSS is above the hard limit; exceedsWarning: a worker is above the soft limit
    or the host uses at least warningThresholdPercent of its memory.
    """
    stats = host_memory_stats(engine)
    largest_mb = largest_worker_rss_mb(engine)
    critical = largest_mb > limits.memory_hard_limit_mb
    warning = critical or largest_mb > limits.memory_soft_limit_mb or \
        stats["percentage"] >= limits.memory_warning_threshold_pct
    return {
        "stats": stats,
        "limits": {"softLimitMB": limits.memory_soft_limit_mb, "hardLimitMB": limits.memory_hard_limit_mb,
                   "warningThresholdPercent": limits.memory_warning_threshold_pct},
        "status": {"withinLimits": not warning, "exceedsWarning": warning, "exceedsCritical": critical},
    }
