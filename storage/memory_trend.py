"""Reads for leak hints: each worker's RSS floor per time bucket over the leak window (worker_snapshots)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, func, select

from core.health import Thresholds
from core.leaks import DEFAULT_RULE, LeakRule, RssPoint, leak_hint
from storage.queries_common import CURRENT_WITHIN_S, reading
from storage.queries_workers import measured_buckets, queues_of
from storage.schema import worker_snapshots

LEAK_POINTS = 60
WorkerKey = tuple[str, str]  # (library, worker name)


def rss_trends(engine: Engine, since_s: float, until_s: float, *, max_points: int = LEAK_POINTS,
               worker_names: Sequence[str] | None = None) -> dict[WorkerKey, dict[str, Any]]:
    """Per worker: lowest RSS, highest jobs count and mean time per bucket (oldest first), queues, birth.

    The lowest RSS of a bucket is the worker's floor, which a leak raises and a job's transient peak does not.
    Only measured rows (rss_mb not null) count; when the worker restarted in the window (a new birth time)
    only the buckets since the newest birth are kept.
    """
    t = worker_snapshots
    _, bucket, condition = measured_buckets(engine, since_s, until_s, max_points, worker_names)
    statement = (select(t.c.library, t.c.worker_name, bucket, func.avg(t.c.sampled_at_s),
                        func.min(t.c.rss_mb), func.max(t.c.jobs_processed), func.max(t.c.birth_at_s),
                        func.max(t.c.queues))
                 .where(condition).group_by(t.c.library, t.c.worker_name, bucket)
                 .order_by(t.c.library, t.c.worker_name, bucket))
    with reading(engine) as conn:
        rows = conn.execute(statement).all()
    trends: dict[WorkerKey, dict[str, Any]] = {}
    for library, name, _, at_s, rss_mb, jobs, birth_at_s, queues in rows:
        trend = trends.setdefault((library, name), {"points": [], "birth_at_s": None, "queues": []})
        if birth_at_s is not None and trend["birth_at_s"] is not None and birth_at_s > trend["birth_at_s"]:
            trend["points"].clear()
        trend["birth_at_s"] = birth_at_s if birth_at_s is not None else trend["birth_at_s"]
        trend["queues"] = queues_of(queues)
        trend["points"].append(RssPoint(float(at_s), float(rss_mb), int(jobs or 0)))
    return trends


def leak_hints(engine: Engine, thresholds: Thresholds, now_s: float, *, rule: LeakRule = DEFAULT_RULE,
               current_within_s: float = CURRENT_WITHIN_S) -> list[dict[str, Any]]:
    """Leak hints (plain dicts, largest growth first) of the workers measured within `current_within_s`."""
    hints = []
    for (library, name), trend in rss_trends(engine, now_s - rule.window_s, now_s).items():
        points = trend["points"]
        if not points or points[-1].at_s < now_s - current_within_s:
            continue
        limits = thresholds.for_queue(trend["queues"][0] if trend["queues"] else "")
        hint = leak_hint(name, library, points, queues=trend["queues"], birth_at_s=trend["birth_at_s"],
                         soft_limit_mb=limits.memory_soft_limit_mb, rule=rule)
        if hint is not None:
            hints.append(hint)
    return sorted(hints, key=lambda h: -h["growth_mb"])
