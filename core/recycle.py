"""The spec's worker recycling rule (job count, uptime, hard memory limit) as a pure function."""
from __future__ import annotations

from core.health import ThresholdSet


def recycle_reasons(jobs_processed: int, uptime_s: float | None, rss_mb: float | None,
                    limits: ThresholdSet) -> list[str]:
    """Every reason a worker should be recycled, in the order jobs, uptime, memory; empty if none."""
    reasons: list[str] = []
    if jobs_processed >= limits.recycle_after_jobs:
        reasons.append(f"Job limit reached: {int(jobs_processed)} jobs >= {int(limits.recycle_after_jobs)}")
    if uptime_s is not None and uptime_s >= limits.recycle_after_uptime_s:
        limit_h = limits.recycle_after_uptime_s / 3600
        reasons.append(f"Uptime limit reached: {uptime_s / 3600:.1f}h >= {limit_h:g}h")
    if rss_mb is not None and rss_mb > limits.memory_hard_limit_mb:
        hard_mb = limits.memory_hard_limit_mb
        reasons.append(f"Critical memory limit exceeded: {rss_mb:.0f}MB > {hard_mb:.0f}MB")
    return reasons


def recycle_verdict(jobs_processed: int, uptime_s: float | None, rss_mb: float | None,
                    limits: ThresholdSet) -> tuple[bool, str | None]:
    """(shouldRecycle, recycleReason) with several reasons joined by "; "."""
    reasons = recycle_reasons(jobs_processed, uptime_s, rss_mb, limits)
    return bool(reasons), "; ".join(reasons) or None
