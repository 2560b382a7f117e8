"""Memory of this host and of worker processes on it, through psutil, in the spec's MemoryStats terms.

For a Python worker process the spec's Node-derived names mean:
- rss: resident set size;
- heapUsed: resident memory private to the process (RSS minus shared pages): its own objects and buffers;
- heapTotal: the process's data segment (heap, stacks and anonymous mappings it has reserved);
- external: resident pages shared with other processes (libraries, shared memory);
- arrayBuffers: no CPython equivalent, always 0;
- percentage: RSS as a percentage of the hard memory limit (the figure that triggers recycling).
"""
from __future__ import annotations

import os
from typing import Any

import psutil

MB = 1024 * 1024


def process_memory(pid: int, hard_limit_mb: float) -> dict[str, float] | None:
    """MemoryStats-shaped figures (MB) of a process on this host; None if it is gone or not readable."""
    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    shared = getattr(info, "shared", 0)
    rss_mb = info.rss / MB
    return {
        "rss_mb": rss_mb,
        "heap_used_mb": max(0, info.rss - shared) / MB,
        "heap_total_mb": getattr(info, "data", info.vms) / MB,
        "external_mb": shared / MB,
        "array_buffers_mb": 0.0,
        "memory_percentage": rss_mb / hard_limit_mb * 100.0 if hard_limit_mb else 0.0,
    }


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
