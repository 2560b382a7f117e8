"""Leak hints from a worker's RSS trend: a robust slope over the last hours, and the setting that fixes it.

A worker's RSS series is a leak when, after its warm-up and since its last restart, over at least
`min_span_s` of the `window_s` window:
- the Theil–Sen slope (median of pairwise slopes, robust to job spikes) times the span is more than
  `min_growth_mb` and more than `min_growth_pct` of the starting level;
- the series mostly rises: at least `min_rising_share` of the steps between points do not fall by more
  than `noise_mb` (a sawtooth of allocations and frees is not a leak);
- the end really is higher: the median of the last fifth of the points is `min_growth_mb` above the median
  of the first fifth.
Jobs processed are cumulative, so they either stayed flat (memory grows while idle) or grew (memory per job).
Pure: no I/O; storage.memory_trend reads the series.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import median
from typing import Any


@dataclass(frozen=True)
class RssPoint:
    """One (downsampled) sample of a worker: time, RSS and cumulative jobs processed."""

    at_s: float
    rss_mb: float
    jobs_processed: int = 0


@dataclass(frozen=True)
class LeakRule:
    """What counts as a leak."""

    window_s: float = 2 * 3600.0
    min_span_s: float = 3600.0
    warmup_s: float = 600.0
    min_points: int = 8
    min_growth_mb: float = 100.0
    min_growth_pct: float = 20.0
    min_rising_share: float = 0.6
    noise_mb: float = 5.0


DEFAULT_RULE = LeakRule()


def theil_sen_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Median of the slopes between every pair of points with distinct x (0 with fewer than two)."""
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i])
              for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]]
    return median(slopes) if slopes else 0.0


def since_restart(points: Sequence[RssPoint], birth_at_s: float | None, warmup_s: float) -> list[RssPoint]:
    """Points after the last restart (a drop in jobs processed) and after the warm-up that follows birth."""
    ordered = sorted(points, key=lambda p: p.at_s)
    start = 0
    for index in range(1, len(ordered)):
        if ordered[index].jobs_processed < ordered[index - 1].jobs_processed:
            start = index
    kept = ordered[start:]
    if birth_at_s is not None:
        kept = [p for p in kept if p.at_s >= birth_at_s + warmup_s]
    return kept


def duration_text(seconds: float) -> str:
    """"2 h", "1.5 h", "45 min"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}".rstrip("0").rstrip(".") + " h"
    return f"{max(1, round(seconds / 60))} min"


def nice_floor(value: float) -> int:
    """The largest of 1, 2, 5 × 10^k not above `value` (at least 1)."""
    if value < 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return max(step * power for step in (1, 2, 5) if step * power <= value)


def leak_hint(worker_name: str, library: str, points: Sequence[RssPoint], *, queues: Sequence[str] = (),
              birth_at_s: float | None = None, soft_limit_mb: float = 512.0,
              rule: LeakRule = DEFAULT_RULE) -> dict[str, Any] | None:
    """A leak hint (plain dict) for one worker's series, or None when the trend is not a leak."""
    kept = since_restart(points, birth_at_s, rule.warmup_s)
    if kept:
        kept = [p for p in kept if p.at_s >= kept[-1].at_s - rule.window_s]
    if len(kept) < rule.min_points:
        return None
    span_s = kept[-1].at_s - kept[0].at_s
    if span_s < rule.min_span_s:
        return None
    times, rss = [p.at_s for p in kept], [p.rss_mb for p in kept]
    slope = theil_sen_slope(times, rss)
    start_mb = median(y - slope * (t - times[0]) for t, y in zip(times, rss))
    growth_mb = slope * span_s
    growth_pct = growth_mb / start_mb * 100.0 if start_mb > 0 else math.inf
    steps = [b - a for a, b in pairwise(rss)]
    rising_share = sum(step >= -rule.noise_mb for step in steps) / len(steps)
    fifth = max(1, len(kept) // 5)
    end_rise_mb = median(rss[-fifth:]) - median(rss[:fifth])
    if (growth_mb <= rule.min_growth_mb or growth_pct <= rule.min_growth_pct
            or rising_share < rule.min_rising_share or end_rise_mb < rule.min_growth_mb):
        return None
    jobs_delta = max(0, kept[-1].jobs_processed - kept[0].jobs_processed)
    mb_per_job = growth_mb / jobs_delta if jobs_delta else None
    if mb_per_job is None:
        message = f"RSS grew {growth_mb:.0f} MB in {duration_text(span_s)} while jobs stayed flat"
    else:
        message = (f"RSS grew {growth_mb:.0f} MB in {duration_text(span_s)} over {jobs_delta:,} jobs "
                   f"(~{mb_per_job:.2f} MB per job)")
    headroom_mb = max(soft_limit_mb - start_mb, rule.min_growth_mb)
    fix = fix_for(library, worker_name, mb_per_job=mb_per_job, headroom_mb=headroom_mb,
                  slope_mb_per_s=slope, soft_limit_mb=soft_limit_mb)
    return {
        "worker_name": worker_name, "library": library, "queues": list(queues),
        "kind": "jobs_flat" if mb_per_job is None else "per_job",
        "message": message, "growth_mb": round(growth_mb, 1), "growth_pct": round(growth_pct, 1),
        "span_s": span_s, "slope_mb_per_h": round(slope * 3600.0, 1), "start_rss_mb": round(start_mb, 1),
        "end_rss_mb": round(rss[-1], 1), "jobs_delta": jobs_delta,
        "mb_per_job": round(mb_per_job, 3) if mb_per_job is not None else None,
        "rising_share": round(rising_share, 2), "since_s": kept[0].at_s, "until_s": kept[-1].at_s, **fix,
    }


RQ_PER_JOB = (
    "The worker exits after {max_jobs} jobs, about when it would reach the soft limit ({soft_mb:.0f} MB); "
    "run it under a supervisor (systemd Restart=always, supervisord, Kubernetes) that starts a fresh one. "
    "With the forking Worker each job runs in a work horse that exits, so growth of the worker process "
    "itself points at code that runs in it: SimpleWorker jobs, callbacks, imports, module caches.")
RQ_IDLE = (
    "The worker grows while it runs no jobs, so --max-jobs never triggers; with --max-idle-time {idle_s} an "
    "idle worker exits after {idle_s} s and its supervisor starts a fresh one.")
CELERY_MAIN_PER_JOB = (
    "The worker's main process grew. Tasks run in the main process only with the solo, threads or gevent "
    "pools, where the per-child limits do nothing: use the prefork pool so that children are replaced, or "
    "restart the worker from its supervisor.")
CELERY_MAIN_IDLE = (
    "The main process grew while no tasks ran; Celery's per-child limits replace pool children only, never "
    "the main process.")
CELERY_CHILD = (
    "Prefork pool: a child is replaced after that many tasks, or after the task during which its resident "
    "memory passed {limit_kib} KiB ({soft_mb:.0f} MB; the value is in KiB); the same as "
    "worker_max_tasks_per_child / worker_max_memory_per_child. The memory limit is checked after each task, "
    "so it cannot stop growth while idle.")
BULLMQ = (
    "BullMQ has no option that recycles a worker: close it gracefully (close() waits for active jobs) and "
    "exit, under systemd Restart=always, Kubernetes or supervisord (pm2 --max-memory-restart for Node "
    "workers, with a SIGTERM/SIGINT handler that calls worker.close()). maxStalledCount only decides what "
    "happens to the jobs of a worker that died; Node sandboxed processors (useWorkerThreads or child "
    "processes) reuse their processes across jobs, so they isolate crashes but do not bound a leak.")


def fix_for(library: str, worker_name: str, *, mb_per_job: float | None, headroom_mb: float,
            slope_mb_per_s: float, soft_limit_mb: float) -> dict[str, str]:
    """The setting that bounds the growth for this library ("setting") and why ("advice")."""
    max_jobs = nice_floor(headroom_mb / mb_per_job) if mb_per_job else None
    to_limit_s = headroom_mb / slope_mb_per_s if slope_mb_per_s > 0 else 3600.0
    idle_s = 60 * nice_floor(min(max(to_limit_s / 2, 60.0), 1800.0) / 60.0)
    limit_kib = int(soft_limit_mb * 1024)
    facts = {"max_jobs": max_jobs, "idle_s": idle_s, "limit_kib": limit_kib, "soft_mb": soft_limit_mb}
    if library == "rq" and max_jobs is not None:
        return {"setting": f"rq worker --max-jobs {max_jobs}", "advice": RQ_PER_JOB.format(**facts)}
    if library == "rq":
        return {"setting": f"rq worker --max-idle-time {idle_s}", "advice": RQ_IDLE.format(**facts)}
    if library == "celery" and "/" not in worker_name:  # the main process; pool children are `<node>/<pid>`
        if max_jobs is not None:
            return {"setting": f"celery worker --pool prefork --max-tasks-per-child {max_jobs}",
                    "advice": CELERY_MAIN_PER_JOB}
        return {"setting": "restart the worker from its supervisor (systemd, Kubernetes)",
                "advice": CELERY_MAIN_IDLE}
    if library == "celery":
        per_child = f"--max-tasks-per-child {max_jobs} " if max_jobs is not None else ""
        return {"setting": f"celery worker {per_child}--max-memory-per-child {limit_kib}",
                "advice": CELERY_CHILD.format(**facts)}
    recycle = f"after {max_jobs} jobs or " if max_jobs is not None else ""
    return {"setting": f"await worker.close() {recycle}above {soft_limit_mb:.0f} MB, then exit; "
                       "a process manager starts a fresh process",
            "advice": BULLMQ}
