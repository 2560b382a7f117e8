"""Pure derivations: a queue reading plus its sliding window give one snapshot row and its health."""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

from collector.health import Breach, ThresholdSet, evaluate, status_of
from collector.model import QueueReading
from collector.sketch import Sketch

THROUGHPUT_WINDOW_S = 60.0
RATE_WINDOW_S = 300.0
PERCENTILES = (0.50, 0.95, 0.99)


@dataclass
class WindowEntry:
    """What one interval contributed to a queue's sliding windows."""

    at_s: float
    interval_s: float
    finished: int
    failed: int
    timeouts: int
    processing: Sketch
    wait: Sketch


class QueueWindow:
    """Recent intervals of one queue: throughput over 60 s, rates and percentiles over 5 min."""

    def __init__(self, throughput_window_s: float = THROUGHPUT_WINDOW_S, rate_window_s: float = RATE_WINDOW_S):
        self.throughput_window_s = throughput_window_s
        self.rate_window_s = rate_window_s
        self.entries: deque[WindowEntry] = deque()

    def with_entry(self, entry: WindowEntry) -> QueueWindow:
        """A copy of this window with one more interval (the original is kept until the cycle is stored)."""
        copy = QueueWindow(self.throughput_window_s, self.rate_window_s)
        copy.entries = deque(self.entries)
        copy.push(entry)
        return copy

    def push(self, entry: WindowEntry) -> None:
        self.entries.append(entry)
        horizon = entry.at_s - max(self.throughput_window_s, self.rate_window_s)
        while self.entries and self.entries[0].at_s <= horizon:
            self.entries.popleft()

    def _within(self, now_s: float, span_s: float) -> list[WindowEntry]:
        return [e for e in self.entries if e.at_s > now_s - span_s]

    def jobs_per_minute(self, now_s: float) -> float:
        recent = self._within(now_s, self.throughput_window_s)
        seconds = sum(e.interval_s for e in recent)
        jobs = sum(e.finished + e.failed for e in recent)
        return jobs / seconds * 60.0 if seconds > 0 else 0.0

    def rates_pct(self, now_s: float) -> tuple[float, float]:
        """(error rate, timeout rate) in percent of jobs ended in the rate window."""
        recent = self._within(now_s, self.rate_window_s)
        ended = sum(e.finished + e.failed for e in recent)
        if not ended:
            return 0.0, 0.0
        failed = sum(e.failed for e in recent)
        timeouts = sum(e.timeouts for e in recent)
        return failed / ended * 100.0, timeouts / ended * 100.0

    def sketches(self, now_s: float) -> tuple[Sketch, Sketch]:
        processing, wait = Sketch(), Sketch()
        for entry in self._within(now_s, self.rate_window_s):
            processing.merge(entry.processing)
            wait.merge(entry.wait)
        return processing, wait


def interval_sketches(reading: QueueReading) -> tuple[Sketch, Sketch]:
    """Processing and wait time sketches of the jobs that ended in this interval."""
    processing, wait = Sketch(), Sketch()
    for job in reading.sampled_jobs:
        if job.processing_ms is not None:
            processing.add(job.processing_ms)
        if job.wait_ms is not None:
            wait.add(job.wait_ms)
    return processing, wait


RECENT_EXECUTIONS = 100


def recent_processing_ms(reading: QueueReading, limit: int = RECENT_EXECUTIONS) -> list[float]:
    """Processing times (ms) of the interval's sampled jobs, newest first."""
    timed = [job for job in reading.sampled_jobs if job.processing_ms is not None]
    timed.sort(key=lambda job: job.ended_at_s or 0.0, reverse=True)
    return [round(job.processing_ms, 3) for job in timed[:limit]]


def snapshot_row(
    reading: QueueReading,
    window: QueueWindow,
    *,
    now_s: float,
    interval_s: float,
    memory_usage_mb: float,
    thresholds: ThresholdSet,
    unavailable: frozenset[str] = frozenset(),
) -> tuple[dict, list[Breach], QueueWindow]:
    """One queue_snapshots row (without ids), the thresholds it crosses, and the window including it."""
    processing, wait = interval_sketches(reading)
    window = window.with_entry(WindowEntry(now_s, interval_s, reading.new_finished, reading.new_failed,
                                           reading.new_timeouts, processing, wait))
    recent_processing, recent_wait = window.sketches(now_s)
    error_rate, timeout_rate = window.rates_pct(now_s)
    p50, p95, p99 = recent_processing.quantiles(PERCENTILES)
    w50, w95, w99 = recent_wait.quantiles(PERCENTILES)
    oldest_ms = 0.0
    if reading.oldest_enqueued_at_s is not None and reading.waiting > 0:
        oldest_ms = max(0.0, (now_s - reading.oldest_enqueued_at_s) * 1000.0)
    row = {
        "queue_name": reading.queue_name,
        "library": reading.library,
        "sampled_at_s": now_s,
        "waiting": reading.waiting,
        "active": reading.active,
        "delayed": reading.delayed,
        "scheduled": reading.scheduled,
        "deferred": reading.deferred,
        "failed": reading.failed,
        "completed": reading.completed,
        "interval_s": interval_s,
        "finished_delta": reading.new_finished,
        "failed_delta": reading.new_failed,
        "timeout_delta": reading.new_timeouts,
        "jobs_per_minute": round(window.jobs_per_minute(now_s), 3),
        "error_rate_pct": round(error_rate, 3),
        "timeout_rate_pct": round(timeout_rate, 3),
        "avg_processing_ms": recent_processing.mean,
        "p50_processing_ms": p50,
        "p95_processing_ms": p95,
        "p99_processing_ms": p99,
        "p50_wait_ms": w50,
        "p95_wait_ms": w95,
        "p99_wait_ms": w99,
        "oldest_waiting_ms": oldest_ms,
        "memory_usage_mb": round(memory_usage_mb, 3),
        "memory_percentage": round(memory_usage_mb / thresholds.memory_hard_limit_mb * 100.0, 3)
        if thresholds.memory_hard_limit_mb else 0.0,
        "processing_sketch": processing.to_bytes() if processing.count else None,
        "wait_sketch": wait.to_bytes() if wait.count else None,
        "recent_processing_ms": json.dumps(recent_processing_ms(reading)),
        "finished_cursor": reading.cursor.finished_score,
        "failed_cursor": reading.cursor.failed_score,
        "cursor_state": reading.cursor.state,
        "details": json.dumps(reading.details, sort_keys=True) if reading.details else None,
    }
    judged = {
        "waiting": row["waiting"], "errorRate": row["error_rate_pct"], "timeoutRate": row["timeout_rate_pct"],
        "p95ProcessingTimeMs": p95, "memoryUsageMB": memory_usage_mb if memory_usage_mb > 0 else None,
    }
    breaches = evaluate({k: (None if k in unavailable else v) for k, v in judged.items()}, thresholds)
    row["unavailable"] = ",".join(sorted(unavailable)) or None
    row["status"] = status_of(breaches)
    row["issues"] = json.dumps([b.issue for b in breaches])
    return row, breaches, window
