"""Memory of this host and of worker processes on it, through psutil, in the spec's MemoryStats terms.

The fields and their meaning for a Python process are defined once, in queuewatch_agent.memory (worker agents
publish the same figures); percentage is RSS as a percentage of the queue's hard memory limit.
"""
from __future__ import annotations

import os
from typing import Any

import psutil

from queuewatch_agent.memory import BYTES_PER_MB as MB
from queuewatch_agent.memory import percentage_of, process_figures_mb


def process_memory(pid: int, hard_limit_mb: float) -> dict[str, float] | None:
    """MemoryStats-shaped figures (MB) of a process on this host; None if it is gone or not readable."""
    figures = process_figures_mb(pid)
    if figures is None:
        return None
    return {**figures, "memory_percentage": percentage_of(figures["rss_mb"], hard_limit_mb)}


def host_memory(hostname: str, workers_rss_mb: float) -> dict[str, Any]:
    """One host_snapshots row (without ids and time) for this host."""
    virtual = psutil.virtual_memory()
    swap = psutil.swap_memory()
    cached = getattr(virtual, "cached", 0) + getattr(virtual, "buffers", 0)
    return {
        "hostname": hostname,
        "total_mb": virtual.total / MB,
        "used_mb": (virtual.total - virtual.available) / MB,
        "available_mb": virtual.available / MB,
        "cached_mb": cached / MB,
        "swap_used_mb": swap.used / MB,
        "percentage": virtual.percent,
        "workers_rss_mb": workers_rss_mb,
        "collector_rss_mb": psutil.Process(os.getpid()).memory_info().rss / MB,
    }
