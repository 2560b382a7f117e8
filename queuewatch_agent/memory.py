"""A process's memory in the spec's MemoryStats terms (MB), through psutil; the one definition of the fields.

For a Python process the spec's Node-derived names mean:
- rss (rss_mb): resident set size;
- heapUsed (heap_used_mb): resident memory private to the process (RSS minus shared pages): its own objects
  and buffers;
- heapTotal (heap_total_mb): the process's data segment (heap, stacks and anonymous mappings it has reserved);
- external (external_mb): resident pages shared with other processes (libraries, shared memory);
- arrayBuffers (array_buffers_mb): no CPython equivalent, always 0;
- percentage (memory_percentage): RSS as a percentage of a hard memory limit.
"""
from __future__ import annotations

from typing import Any

import psutil

BYTES_PER_MB = 1024 * 1024
FIELDS = ("rss_mb", "heap_used_mb", "heap_total_mb", "external_mb", "array_buffers_mb")


def figures_mb(info: Any) -> dict[str, float]:
    """The five MemoryStats sizes (MB) from a psutil `memory_info()` result (shared/data are Linux-only)."""
    shared = getattr(info, "shared", 0)
    return {
        "rss_mb": info.rss / BYTES_PER_MB,
        "heap_used_mb": max(0, info.rss - shared) / BYTES_PER_MB,
        "heap_total_mb": getattr(info, "data", info.vms) / BYTES_PER_MB,
        "external_mb": shared / BYTES_PER_MB,
        "array_buffers_mb": 0.0,
    }


def percentage_of(rss_mb: float, limit_mb: float) -> float:
    """RSS as a percentage of a limit (0 when there is no limit)."""
    return rss_mb / limit_mb * 100.0 if limit_mb else 0.0


def process_figures_mb(pid: int) -> dict[str, float] | None:
    """The five MemoryStats sizes (MB) of a process on this host; None if it is gone or not readable."""
    try:
        return figures_mb(psutil.Process(pid).memory_info())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def children_rss_mb(pid: int) -> float | None:
    """Summed RSS (MB) of a process's live descendants (e.g. an RQ work horse); None if not readable."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    total = 0
    for child in children:
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total / BYTES_PER_MB
