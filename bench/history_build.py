"""Builds a benchmark history through the collector's own path: core.derive.snapshot_row, then write_cycle.

Each queue's readings are drawn with numpy (job times lognormal, busy queues end `jobs_per_snapshot` to
twice that many timed jobs per 10 s snapshot, light ones 0-3) and derived for real, sliding windows included,
for one hour of cycles (`TEMPLATE_CYCLES`). Those derived rows (their sketches, percentiles, statuses and
alert breaches) are then replayed cycle after cycle with the time, the cumulative counts and the cursors
advanced, each cycle stored by `storage.writer.write_cycle` with the alert rules' plan, as the collector
stores it. The derivation cost per queue is measured on the hour derived for real. Derivation and write
costs are the process's CPU time (`time.process_time`: SQLite runs in-process with fsync off), so that other
work on a shared machine does not count as the collector's.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy import Engine, event

from collector.memory import host_memory
from core import alert_rules
from core.derive import QueueWindow, snapshot_row
from core.health import Breach, ThresholdSet
from core.model import Cursor, FinishedJob, QueueReading
from storage.engine import make_engine
from storage.writer import CycleRecord, OpenAlertRow, write_cycle

INTERVAL_S = 10.0
TEMPLATE_CYCLES = 360  # one hour of cycles derived for real per queue, then replayed
WORKERS_MAX = 8
CHART_QUEUE = "queue-0000"


@dataclass
class QueueTemplate:
    """One queue's hour of derived rows and the breaches of each."""

    rows: list[dict[str, Any]]
    breaches: list[list[Breach]]
    jobs_per_cycle: list[int]


@dataclass
class BuildStats:
    cycles: int = 0
    queue_rows: int = 0
    derive_s: float = 0.0
    derived_rows: int = 0
    write_s: float = 0.0
    build_s: float = 0.0
    queue_days: float = 0.0
    written_per_queue: dict[str, int] = field(default_factory=dict)

    @property
    def cycle_ms_per_queue(self) -> float:
        """Derivation (windows, sketches, health, alert rules) plus the DB write, per queue and cycle."""
        return (self.derive_s / max(1, self.derived_rows) + self.write_s / max(1, self.queue_rows)) * 1000.0


def queue_names(count: int) -> list[str]:
    return [f"queue-{i:04d}" for i in range(count)]


def fast_engine(path: Path) -> Engine:
    """A fresh SQLite file; commits skip fsync (a throw-away benchmark database)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _no_fsync(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    engine.dispose()
    return engine


def _reading(name: str, index: int, k: int, at_s: float, times_ms: np.ndarray,
             waits_ms: np.ndarray) -> QueueReading:
    """One queue's reading of cycle k of the template: the jobs that ended in the last interval."""
    ends = at_s - INTERVAL_S * np.linspace(0.95, 0.05, len(times_ms))
    jobs = [FinishedJob(f"{name}:{k}:{i}", False, False, float(end - (p + w) / 1000.0), float(end - p / 1000.0),
                        float(end)) for i, (p, w, end) in enumerate(zip(times_ms, waits_ms, ends))]
    failed = int(len(jobs) > 0 and (k + index) % 25 == 0)
    waiting = int(40 + 35 * np.sin(2 * np.pi * k / TEMPLATE_CYCLES + index))
    if index == 1 and TEMPLATE_CYCLES // 3 <= k < TEMPLATE_CYCLES // 2:
        waiting += 250  # one queue crosses the depth warning each hour: alerts open and resolve
    return QueueReading(name, "rq", max(0, waiting), 3, 1, 0, 10 + index % 5, 0, at_s - waiting * 0.2,
                        Cursor(at_s, at_s), new_finished=len(jobs) - failed, new_failed=failed,
                        sampled_jobs=jobs)


def derive_templates(names: list[str], jobs_per_snapshot: int, start_s: float, rng: np.random.Generator,
                     thresholds: ThresholdSet, stats: BuildStats,
                     cycles: int = TEMPLATE_CYCLES) -> list[QueueTemplate]:
    """Every queue's hour of readings, derived by snapshot_row exactly as the collector derives them."""
    templates = []
    for index, name in enumerate(names):
        busy = index % 2 == 0
        low, high = (jobs_per_snapshot, 2 * jobs_per_snapshot + 1) if busy else (0, 4)
        counts = rng.integers(low, high, cycles)
        median_ms = 80.0 * (1 + index % 7)
        window, rows, breaches = QueueWindow(), [], []
        for k, count in enumerate(counts):
            at_s = start_s + k * INTERVAL_S
            reading = _reading(name, index, k, at_s, rng.lognormal(np.log(median_ms), 0.7, count),
                               rng.lognormal(np.log(median_ms / 2), 1.0, count))
            started = time.process_time()
            row, found, window = snapshot_row(reading, window, now_s=at_s, interval_s=INTERVAL_S,
                                              memory_usage_mb=220.0 + index % 50, thresholds=thresholds,
                                              live_workers=2)
            stats.derive_s += time.process_time() - started
            stats.derived_rows += 1
            rows.append(row)
            breaches.append(found)
        templates.append(QueueTemplate(rows, breaches, [int(c) for c in counts]))
    return templates


def _worker_rows(names: list[str], count: int) -> list[dict[str, Any]]:
    rows = []
    for index in range(count):
        queues = ",".join(names[index::count][:3])
        rows.append({"worker_name": f"worker-{index}", "library": "rq", "queues": queues, "pid": 1000 + index,
                     "hostname": "bench-host", "state": "busy", "alive": True, "jobs_processed": 0,
                     "successful_jobs": 0, "failed_jobs": 0, "birth_at_s": None, "last_heartbeat_at_s": None,
                     "memory_source": "agent", "rss_mb": 200.0 + 10 * index, "heap_used_mb": None,
                     "heap_total_mb": None, "external_mb": None, "array_buffers_mb": None,
                     "memory_percentage": (200.0 + 10 * index) / 10.24, "should_recycle": False,
                     "recycle_reason": None})
    return rows


class Replayer:
    """Writes cycles from the templates, advancing time, cumulative counts and cursors."""

    def __init__(self, engine: Engine, names: list[str], templates: list[QueueTemplate], start_s: float,
                 stats: BuildStats, workers: int):
        self.engine, self.names, self.templates, self.stats = engine, names, templates, stats
        self.period = len(templates[0].rows)
        self.completed = np.zeros(len(names), dtype=np.int64)
        self.born_s = start_s
        self.workers = _worker_rows(names, workers)
        self.host = host_memory(socket.gethostname(), sum(w["rss_mb"] for w in self.workers))

    def cycle(self, step: int, at_s: float, queue_indexes: range | list[int], with_workers: bool) -> None:
        k = step % self.period
        rows, breaches = [], {}
        for q in queue_indexes:
            template = self.templates[q]
            self.completed[q] += template.jobs_per_cycle[k]
            row = {**template.rows[k], "sampled_at_s": at_s, "completed": int(self.completed[q]),
                   "finished_cursor": at_s, "failed_cursor": at_s}
            rows.append(row)
            breaches[self.names[q]] = template.breaches[k]
        workers = []
        if with_workers:
            workers = [{**w, "sampled_at_s": at_s, "birth_at_s": self.born_s, "last_heartbeat_at_s": at_s,
                        "jobs_processed": step} for w in self.workers]
        record = CycleRecord(at_s - 0.05, at_s, 3, rows, workers, {**self.host, "sampled_at_s": at_s})

        def plan(open_rows: list[OpenAlertRow]) -> list[alert_rules.AlertChange]:
            return alert_rules.plan(open_rows, breaches, at_s)

        started = time.process_time()
        write_cycle(self.engine, record, plan)
        self.stats.write_s += time.process_time() - started
        self.stats.cycles += 1
        self.stats.queue_rows += len(rows)


def build_history(path: Path, *, days: float, queues: int, jobs_per_snapshot: int, long_days: float = 30.0,
                  template_cycles: int = TEMPLATE_CYCLES, clock: Callable[[], float] = time.time,
                  seed: int = 1) -> tuple[Engine, BuildStats, float]:
    """The history database: every queue for `days`, the chart queue alone back to `long_days`.

    Cycles run up to the current time (the build's own duration is caught up), so the newest cycle is
    current when the reads start. Returns the engine, the build figures and the newest cycle's time.
    """
    stats = BuildStats()
    started = time.perf_counter()
    engine = fast_engine(path)
    names = queue_names(queues)
    thresholds = ThresholdSet()
    end_s = float(np.floor(clock() / INTERVAL_S) * INTERVAL_S)
    first_s = end_s - max(days, long_days) * 86400.0
    all_from_s = end_s - days * 86400.0
    templates = derive_templates(names, jobs_per_snapshot, first_s, np.random.default_rng(seed), thresholds,
                                 stats, template_cycles)
    replay = Replayer(engine, names, templates, first_s, stats, min(queues, WORKERS_MAX))
    step, at_s = 0, first_s
    everyone, chart_only = range(queues), [0]
    while at_s <= end_s or at_s <= clock():
        full = at_s > all_from_s
        replay.cycle(step, at_s, everyone if full else chart_only, with_workers=full)
        step += 1
        at_s += INTERVAL_S
    newest_s = at_s - INTERVAL_S
    stats.queue_days = queues * min(days, (newest_s - first_s) / 86400.0) + max(0.0, long_days - days)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("ANALYZE")
    stats.build_s = time.perf_counter() - started
    return engine, stats, newest_s


def steady_cycle_ms_per_queue(engine: Engine, *, queues: int, jobs_per_snapshot: int, after_s: float,
                              cycles: int = 120, seed: int = 2) -> float:
    """The collector's own work per queue and cycle (CPU ms) on a database that already holds the history:
    `cycles` more cycles of every queue, derived for real and written after `after_s`."""
    stats = BuildStats()
    names = queue_names(queues)
    start_s = float(np.ceil(after_s / INTERVAL_S) * INTERVAL_S) + INTERVAL_S
    templates = derive_templates(names, jobs_per_snapshot, start_s, np.random.default_rng(seed), ThresholdSet(),
                                 stats, cycles)
    replay = Replayer(engine, names, templates, start_s, stats, min(queues, WORKERS_MAX))
    for step in range(cycles):
        replay.cycle(step, start_s + step * INTERVAL_S, range(queues), with_workers=True)
    return stats.cycle_ms_per_queue
