"""A realistic history written through the real write path, with every input kept so tests know the answers.

Five queues over `hours` of 10-second cycles, three RQ queues (shape of each as a fraction of the span):
- emails: healthy, 10 jobs per interval, no failures;
- reports: 4 jobs per interval, a critical depth spike (waiting 1500) at 20-28 % that opens and resolves an
  alert, and a warning depth (waiting 260) during the last 12 % whose alert stays open;
- thumbnails: 18 finished + 2 failed (1 timed out) per interval, so error rate 10 % and timeout rate 5 %
  (warnings), and a worker at 1850 MB RSS (critical memory alert).
An outage (failed cycles, no snapshots) covers 50-52 % of the span; the first snapshot after it carries the
jobs of the whole gap, as the registries would. RQ workers: one healthy, one past the job
limit, one over the hard memory limit and the uptime limit, one stale (alive false), one gone halfway.

Two more libraries, healthy and without alerts, drawing from their own random generators so that the RQ
queues' figures are the same as with the RQ queues alone:
- notifications (BullMQ): 6 jobs per interval, waiting 50-56 spread over the five priority tiers, one stalled
  job, paused from 85 % of the span on; memory unavailable (as the BullMQ reader reports); its worker's
  memory comes from the agent;
- celery (Celery, task events off): waiting 12-18, 3 active, 2 scheduled; failed, completed and every timing
  figure unavailable (as the Celery reader reports without events); its worker's memory is unknown.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from core import alert_rules as alerts
from collector.celery_reader import ALWAYS_UNAVAILABLE as CELERY_UNAVAILABLE
from collector.celery_reader import TIMING_FIELDS
from core.derive import QueueWindow, snapshot_row
from core.health import ThresholdSet
from core.model import Cursor, FinishedJob, QueueReading
from storage.engine import make_engine
from core.recycle import recycle_verdict
from storage.writer import CycleRecord, record_outage, write_cycle

DEFAULT_QUEUES = ("emails", "reports", "thumbnails", "notifications", "celery")
INTERVAL_S = 10.0
PAUSED_FROM_FRACTION = 0.85
NO_AGENT_MEMORY = frozenset({"memoryUsageMB"})
"""The seeded BullMQ queues' workers run no memory agent, so their memory is not measured."""
UNAVAILABLE = {"rq": frozenset(), "bullmq": NO_AGENT_MEMORY, "celery": CELERY_UNAVAILABLE | TIMING_FIELDS}


@dataclass(frozen=True)
class QueueProfile:
    """Fixed inputs of one seeded queue."""

    finished: int
    failed: int
    timeouts: int
    processing_median_ms: float
    processing_sigma: float
    wait_mean_ms: float
    active: int
    base_waiting: int
    library: str = "rq"
    scheduled: int = 0


PROFILES = {
    "emails": QueueProfile(10, 0, 0, 200.0, 0.5, 400.0, 2, 5),
    "reports": QueueProfile(4, 0, 0, 3000.0, 0.6, 2000.0, 3, 40),
    "thumbnails": QueueProfile(18, 2, 1, 800.0, 0.4, 900.0, 4, 20),
    "notifications": QueueProfile(6, 0, 0, 150.0, 0.5, 300.0, 2, 50, library="bullmq"),
    "celery": QueueProfile(0, 0, 0, 500.0, 0.5, 500.0, 3, 12, library="celery", scheduled=2),
}
# Waiting jobs of the BullMQ queue in every tier but Normal (5), which holds the rest.
BULLMQ_TIER_COUNTS = {1: 2, 3: 5, 7: 4, 10: 9}


@dataclass(frozen=True)
class WorkerSpec:
    """A seeded worker: figures at the end of the span."""

    name: str
    queues: tuple[str, ...]
    rss_mb: float | None
    jobs_processed: int
    uptime_s: float
    alive: bool = True
    gone_after_fraction: float | None = None
    library: str = "rq"
    memory_source: str | None = "psutil"  # when rss_mb is known
    hostname: str | None = None  # None: the collector's host when measured by psutil, else "remote-host"
    pid_known: bool = True


WORKERS = (
    WorkerSpec("worker-emails-1", ("emails",), 300.0, 420, 2 * 3600.0),
    WorkerSpec("worker-reports-1", ("reports",), 600.0, 1243, 3 * 3600.0),
    WorkerSpec("worker-asset-2", ("thumbnails",), 1850.0, 310, 5 * 3600.0),
    WorkerSpec("worker-old-1", ("emails",), None, 12, 1 * 3600.0, alive=False),
    WorkerSpec("worker-gone-1", ("reports", "emails"), 250.0, 40, 1 * 3600.0, gone_after_fraction=0.5),
    WorkerSpec("bull-worker-1", ("notifications",), 420.0, 0, 1.5 * 3600.0, library="bullmq",
               memory_source="agent", hostname="bull-host-1", pid_known=False),
    WorkerSpec("celery@worker-3", ("celery",), None, 800, 2 * 3600.0, library="celery",
               hostname="celery-host-1"),
)


@dataclass
class SeedResult:
    """What was written: times, per-snapshot raw timings and counts, outage span."""

    now_s: float
    since_s: float
    interval_s: float
    queues: list[str]
    sampled_at_s: dict[str, list[float]] = field(default_factory=dict)
    processing_ms: dict[str, list[list[float]]] = field(default_factory=dict)
    wait_ms: dict[str, list[list[float]]] = field(default_factory=dict)
    waiting: dict[str, list[int]] = field(default_factory=dict)
    outage: tuple[float, float] | None = None
    alert_changes: list = field(default_factory=list)

    def raw_processing(self, queue: str, since_s: float, until_s: float) -> list[float]:
        """Every processing time of the queue's snapshots within [since_s, until_s]."""
        return [v for at_s, values in zip(self.sampled_at_s[queue], self.processing_ms[queue])
                if since_s <= at_s <= until_s for v in values]


def bullmq_details(waiting: int, fraction: float) -> dict:
    """The BullMQ queue's details as the BullMQ reader writes them (BullMQExtras as a dict)."""
    counts = {**BULLMQ_TIER_COUNTS, 5: waiting - sum(BULLMQ_TIER_COUNTS.values())}
    return {"paused": fraction >= PAUSED_FROM_FRACTION, "priority_counts": dict(sorted(counts.items())),
            "stalled": 1, "prefix": "bull", "throughput_source": "metrics", "events_gap": False}


def _reading(name: str, profile: QueueProfile, at_s: float, waiting: int, completed: int, failed_total: int,
             scale: int, rng: np.random.Generator, result: SeedResult) -> QueueReading:
    """One queue's reading; `scale` intervals' worth of jobs after a gap, as the registries hold them."""
    finished, failed, timeouts = profile.finished * scale, profile.failed * scale, profile.timeouts * scale
    count = finished + failed
    median_log = math.log(profile.processing_median_ms)
    processing = rng.lognormal(median_log, profile.processing_sigma, count).tolist()
    wait = rng.exponential(profile.wait_mean_ms, count).tolist()
    jobs = []
    for index in range(count):
        ended = at_s - float(rng.uniform(0.0, INTERVAL_S * scale * 0.9))
        started = ended - processing[index] / 1000.0
        is_failed = index >= finished
        timed_out = is_failed and index - finished < timeouts
        enqueued = started - wait[index] / 1000.0
        jobs.append(FinishedJob(f"{name}-{at_s:.0f}-{index}", is_failed, timed_out, enqueued, started, ended))
    result.processing_ms[name].append([j.processing_ms for j in jobs])
    result.wait_ms[name].append([j.wait_ms for j in jobs])
    if profile.library == "celery":
        failed_total = completed = 0
    return QueueReading(name, profile.library, waiting, profile.active, profile.scheduled, 0, failed_total,
                        completed, at_s - 3.4 if waiting else None, Cursor(at_s, at_s), finished, failed,
                        timeouts, jobs)


def _waiting(name: str, fraction: float, step: int, profile: QueueProfile) -> int:
    if name == "reports" and 0.20 <= fraction < 0.28:
        return 1500
    if name == "reports" and fraction >= 0.88:
        return 260
    return profile.base_waiting + step % 7


def _worker_row(spec: WorkerSpec, at_s: float, now_s: float, limits: ThresholdSet) -> dict:
    birth_s = now_s - spec.uptime_s
    jobs = max(0, int(spec.jobs_processed - (now_s - at_s) / 60.0))
    rss = spec.rss_mb
    should, reason = recycle_verdict(jobs, at_s - birth_s, rss, limits)
    hostname = spec.hostname or ("worker-host-1" if rss is not None else "remote-host")
    return {
        "sampled_at_s": at_s, "worker_name": spec.name, "library": spec.library,
        "queues": ",".join(spec.queues),
        "pid": 4000 + len(spec.name) if spec.pid_known else None, "hostname": hostname,
        "state": "busy" if spec.alive else "idle", "alive": spec.alive, "jobs_processed": jobs,
        "successful_jobs": jobs - jobs // 50, "failed_jobs": jobs // 50, "birth_at_s": birth_s,
        "last_heartbeat_at_s": at_s - 2.0 if spec.alive else birth_s + 600.0,
        "memory_source": spec.memory_source if rss is not None else None, "rss_mb": rss,
        **_memory_figures(rss, limits),
        "should_recycle": should, "recycle_reason": reason,
    }


def _memory_figures(rss_mb: float | None, limits: ThresholdSet) -> dict:
    if rss_mb is None:
        return dict.fromkeys(("heap_used_mb", "heap_total_mb", "external_mb", "array_buffers_mb",
                              "memory_percentage"))
    return {"heap_used_mb": rss_mb * 0.8, "heap_total_mb": rss_mb * 1.1, "external_mb": rss_mb * 0.05,
            "array_buffers_mb": 0.0, "memory_percentage": rss_mb / limits.memory_hard_limit_mb * 100.0}


def _host_row(at_s: float, step: int, workers_rss_mb: float) -> dict:
    used = 6000.0 + 500.0 * math.sin(step / 30.0)
    return {"sampled_at_s": at_s, "hostname": "worker-host-1", "total_mb": 16000.0, "used_mb": used,
            "available_mb": 16000.0 - used, "cached_mb": 2000.0, "swap_used_mb": 0.0,
            "percentage": used / 160.0,
            "workers_rss_mb": workers_rss_mb, "collector_rss_mb": 80.0}


def seed_database(engine: Engine, now_s: float, *, hours: float = 1.0, queues: list[str] | tuple[str, ...] =
                  DEFAULT_QUEUES, interval_s: float = INTERVAL_S, seed: int = 7) -> SeedResult:
    """Write `hours` of cycles ending at `now_s` for the queues (names from PROFILES); returns the inputs."""
    rng = np.random.default_rng(seed)
    own_rngs = {name: np.random.default_rng([seed, index]) for index, name in enumerate(queues)
                if PROFILES[name].library != "rq"}
    steps = int(hours * 3600 / interval_s)
    since_s = now_s - (steps - 1) * interval_s
    result = SeedResult(now_s, since_s, interval_s, list(queues))
    for name in queues:
        result.sampled_at_s[name], result.processing_ms[name], result.wait_ms[name] = [], [], []
        result.waiting[name] = []
    limits = ThresholdSet()
    windows = {name: QueueWindow() for name in queues}
    previous_s: dict[str, float] = {}
    completed = {name: 1000 for name in queues}
    failed_total = {name: 0 for name in queues}
    outage_steps = range(int(steps * 0.50), int(steps * 0.52))
    for step in range(steps):
        at_s = since_s + step * interval_s
        fraction = step / steps
        if step in outage_steps:
            if (step - outage_steps.start) % 6 == 0:
                record_outage(engine, at_s, at_s + 5.0, "Redis unreachable: Connection refused")
            if result.outage is None:
                result.outage = (at_s, at_s)
            result.outage = (result.outage[0], at_s + 5.0)
            continue
        worker_rows = [_worker_row(w, at_s, now_s, limits) for w in WORKERS
                       if w.gone_after_fraction is None or fraction < w.gone_after_fraction]
        rss_by_queue: dict[str, float] = {}
        for row in worker_rows:
            if row["alive"] and row["rss_mb"] is not None:
                for queue_name in row["queues"].split(","):
                    rss_by_queue[queue_name] = max(rss_by_queue.get(queue_name, 0.0), row["rss_mb"])
        queue_rows, breaches = [], {}
        for name in queues:
            profile = PROFILES[name]
            elapsed_s = at_s - previous_s.get(name, at_s - interval_s)
            scale = max(1, round(elapsed_s / interval_s))
            completed[name] += profile.finished * scale
            failed_total[name] += profile.failed * scale
            waiting = _waiting(name, fraction, step, profile)
            reading = _reading(name, profile, at_s, waiting, completed[name], failed_total[name], scale,
                               own_rngs.get(name, rng), result)
            if profile.library == "bullmq":
                reading.details = bullmq_details(waiting, fraction)
            row, breaches[name], windows[name] = snapshot_row(
                reading, windows[name], now_s=at_s, interval_s=elapsed_s,
                memory_usage_mb=rss_by_queue.get(name), thresholds=limits,
                unavailable=UNAVAILABLE[profile.library])
            previous_s[name] = at_s
            queue_rows.append(row)
            result.sampled_at_s[name].append(at_s)
            result.waiting[name].append(waiting)
        workers_rss = sum(r["rss_mb"] or 0.0 for r in worker_rows
                          if r["alive"] and r["memory_source"] == "psutil")
        host_row = _host_row(at_s, step, workers_rss)
        record = CycleRecord(at_s - 0.5, at_s, 12, queue_rows, worker_rows, host_row)
        planned = breaches

        def plan(open_rows, planned=planned, at_s=at_s):
            return alerts.plan(open_rows, planned, at_s)

        result.alert_changes.extend(write_cycle(engine, record, plan))
    return result


def write_seed_file(path: Path, now_s: float, *, hours: float = 1.0) -> SeedResult:
    """Seed a new SQLite file at `path` and fold its WAL back in, so the file can be copied as a template."""
    engine = make_engine(f"sqlite:///{path}")
    try:
        result = seed_database(engine, now_s, hours=hours)
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return result


def copy_database(template: Path, destination: Path) -> str:
    """Copy a seeded template file and return the copy's database URL."""
    shutil.copyfile(template, destination)
    return f"sqlite:///{destination}"
