"""Pure derivations: a queue reading plus its sliding window give one snapshot row and its health."""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

from core.health import Breach, ThresholdSet, evaluate, idle_backlog_issue, status_of
from core.model import QueueReading
from core.sketch import Sketch

THROUGHPUT_WINDOW_S = 60.0
RATE_WINDOW_S = 300.0
PERCENTILES = (0.50, 0.95, 0.99)


@dataclass
class WindowEntry:
    """What one interval, (at_s - interval_s, at_s], contributed to a queue's sliding windows."""

    at_s: float
    interval_s: float
    finished: int
    failed: int
    timeouts: int
    processing: Sketch
    wait: Sketch

    def share(self, now_s: float, span_s: float) -> float:
        """Fraction of this interval inside the window (now_s - span_s, now_s]."""
        start_s = self.at_s - self.interval_s
        overlap_s = min(self.at_s, now_s) - max(start_s, now_s - span_s)
        if self.interval_s <= 0:
            return 1.0 if now_s - span_s < self.at_s <= now_s else 0.0
        return min(1.0, max(0.0, overlap_s / self.interval_s))


def _add_buckets(into: dict[int, int], sketch: Sketch, sign: int) -> None:
    for key, count in sketch.buckets.items():
        left = into.get(key, 0) + sign * count
        if left:
            into[key] = left
        else:
            into.pop(key, None)


class QueueWindow:
    """Recent intervals of one queue: throughput over 60 s, rates and percentiles over 5 min.

    An interval longer than usual (the recent past read on a first cycle, the cycle after an outage) counts
    in a window in proportion to its overlap with it; its timings count whole while it overlaps at all.
    The bucket counts of every held interval's sketches are kept summed as intervals come and go, so a
    cycle's window percentiles cost one interval's buckets, not the whole window's.
    """

    def __init__(self, throughput_window_s: float = THROUGHPUT_WINDOW_S, rate_window_s: float = RATE_WINDOW_S):
        self.throughput_window_s = throughput_window_s
        self.rate_window_s = rate_window_s
        self.entries: deque[WindowEntry] = deque()
        self._processing_buckets: dict[int, int] = {}
        self._wait_buckets: dict[int, int] = {}
        self._within_memo: dict[tuple[float, float], list[tuple[WindowEntry, float]]] = {}

    @property
    def span_s(self) -> float:
        return max(self.throughput_window_s, self.rate_window_s)

    def with_entry(self, entry: WindowEntry) -> QueueWindow:
        """A copy of this window with one more interval (the original is kept until the cycle is stored)."""
        copy = QueueWindow(self.throughput_window_s, self.rate_window_s)
        copy.entries = deque(self.entries)
        copy._processing_buckets = dict(self._processing_buckets)
        copy._wait_buckets = dict(self._wait_buckets)
        copy.push(entry)
        return copy

    def push(self, entry: WindowEntry) -> None:
        self._within_memo.clear()
        self.entries.append(entry)
        _add_buckets(self._processing_buckets, entry.processing, 1)
        _add_buckets(self._wait_buckets, entry.wait, 1)
        while self.entries and self.entries[0].share(entry.at_s, self.span_s) <= 0:
            gone = self.entries.popleft()
            _add_buckets(self._processing_buckets, gone.processing, -1)
            _add_buckets(self._wait_buckets, gone.wait, -1)

    def _within(self, now_s: float, span_s: float) -> list[tuple[WindowEntry, float]]:
        found = self._within_memo.get((now_s, span_s))
        if found is None:
            shares = ((entry, entry.share(now_s, span_s)) for entry in self.entries)
            found = self._within_memo[(now_s, span_s)] = [(e, share) for e, share in shares if share > 0]
        return found

    def jobs_per_minute(self, now_s: float) -> float:
        recent = self._within(now_s, self.throughput_window_s)
        seconds = sum(e.interval_s * share for e, share in recent)
        jobs = sum((e.finished + e.failed) * share for e, share in recent)
        return jobs / seconds * 60.0 if seconds > 0 else 0.0

    def ended_jobs(self, now_s: float) -> float:
        """Jobs that ended (finished or failed) in the rate window."""
        return sum((e.finished + e.failed) * share for e, share in self._within(now_s, self.rate_window_s))

    def rates_pct(self, now_s: float) -> tuple[float, float] | None:
        """(error rate, timeout rate) in percent of jobs ended in the rate window; None when none ended."""
        recent = self._within(now_s, self.rate_window_s)
        ended = sum((e.finished + e.failed) * share for e, share in recent)
        if ended <= 0:
            return None
        failed = sum(e.failed * share for e, share in recent)
        timeouts = sum(e.timeouts * share for e, share in recent)
        return failed / ended * 100.0, timeouts / ended * 100.0

    def sketches(self, now_s: float) -> tuple[Sketch, Sketch]:
        """The merged processing and wait sketches of the intervals in the rate window."""
        recent = [entry for entry, _ in self._within(now_s, self.rate_window_s)]
        if len(recent) == len(self.entries):  # every held interval: the kept sums are the merged buckets
            return (_summed([e.processing for e in recent], self._processing_buckets),
                    _summed([e.wait for e in recent], self._wait_buckets))
        processing, wait = Sketch(), Sketch()
        for entry in recent:
            processing.merge(entry.processing)
            wait.merge(entry.wait)
        return processing, wait


def _summed(sketches: list[Sketch], buckets: dict[int, int]) -> Sketch:
    """What merging `sketches` one by one gives, with their bucket counts already summed in `buckets`."""
    merged = Sketch(buckets=dict(buckets))
    for sketch in sketches:
        merged.count += sketch.count
        merged.total += sketch.total
        if sketch.min < merged.min:
            merged.min = sketch.min
        if sketch.max > merged.max:
            merged.max = sketch.max
    return merged


def interval_sketches(reading: QueueReading) -> tuple[Sketch, Sketch]:
    """Processing and wait time sketches of the jobs that ended in this interval."""
    jobs = reading.sampled_jobs
    processing = Sketch().extend([ms for ms in (job.processing_ms for job in jobs) if ms is not None])
    wait = Sketch().extend([ms for ms in (job.wait_ms for job in jobs) if ms is not None])
    return processing, wait


RECENT_EXECUTIONS = 100


def recent_processing_ms(reading: QueueReading, limit: int = RECENT_EXECUTIONS) -> list[float]:
    """Processing times (ms) of the interval's sampled jobs, newest first."""
    timed = [job for job in reading.sampled_jobs if job.processing_ms is not None]
    timed.sort(key=lambda job: job.ended_at_s or 0.0, reverse=True)
    return [round(job.processing_ms, 3) for job in timed[:limit]]


RATE_FIELDS = frozenset({"errorRate", "timeoutRate"})
MEMORY_FIELDS = frozenset({"memoryUsageMB", "memoryPercentage"})
OLDEST_FIELD = "oldestWaitingMs"


def snapshot_row(
    reading: QueueReading,
    window: QueueWindow,
    *,
    now_s: float,
    interval_s: float,
    memory_usage_mb: float | None,
    thresholds: ThresholdSet,
    unavailable: frozenset[str] = frozenset(),
    live_workers: int | None = None,
    min_jobs: float = 0.0,
) -> tuple[dict, list[Breach], QueueWindow]:
    """One queue_snapshots row (without ids), the thresholds it crosses, and the window including it.

    A figure nobody measured is stored as 0 with its field named in `unavailable` (shown as n/a): error and
    timeout rates when no job ended in the rate window, memory when no worker of the queue is measured, the
    oldest waiting age when jobs wait but none's enqueue time is known, and what the reader could not read for
    this queue alone (QueueReading.unavailable). `live_workers` (None: unknown) makes
    waiting jobs with no live worker a health issue. Error and timeout rates breach only when at least
    `min_jobs` jobs ended in the rate window.
    """
    processing, wait = interval_sketches(reading)
    window = window.with_entry(WindowEntry(now_s, interval_s, reading.new_finished, reading.new_failed,
                                           reading.new_timeouts, processing, wait))
    recent_processing, recent_wait = window.sketches(now_s)
    rates = window.rates_pct(now_s)
    p50, p95, p99 = recent_processing.quantiles(PERCENTILES)
    w50, w95, w99 = recent_wait.quantiles(PERCENTILES)
    unmeasured = (set(unavailable) - MEMORY_FIELDS) | set(reading.unavailable)
    if rates is None:
        unmeasured |= RATE_FIELDS
    if memory_usage_mb is None:
        unmeasured |= MEMORY_FIELDS
    oldest_ms = 0.0
    if reading.waiting > 0:
        if reading.oldest_enqueued_at_s is None:
            unmeasured.add(OLDEST_FIELD)
        else:
            oldest_ms = max(0.0, (now_s - reading.oldest_enqueued_at_s) * 1000.0)
    error_rate, timeout_rate = rates or (0.0, 0.0)
    memory_mb = memory_usage_mb or 0.0
    limit_mb = thresholds.memory_hard_limit_mb
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
        "memory_usage_mb": round(memory_mb, 3),
        "memory_percentage": round(memory_mb / limit_mb * 100.0, 3) if limit_mb else 0.0,
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
        "p95ProcessingTimeMs": p95, "memoryUsageMB": memory_usage_mb,
    }
    breaches = evaluate({k: (None if k in unmeasured else v) for k, v in judged.items()}, thresholds,
                        ended_jobs=window.ended_jobs(now_s), min_jobs=min_jobs)
    issues = [b.issue for b in breaches]
    status = status_of(breaches)
    worker_issue = idle_backlog_issue(reading.waiting, live_workers)
    if worker_issue:
        issues.append(worker_issue)
        status = "warning" if status == "healthy" else status
    row["unavailable"] = ",".join(sorted(unmeasured)) or None
    row["status"] = status
    row["issues"] = json.dumps(issues)
    return row, breaches, window
