"""The collector's resume point: the newest snapshot's registry cursors per queue."""
from __future__ import annotations

import math
from typing import NamedTuple

from sqlalchemy import Engine, and_, select

from storage.layout import latest_select, samples_join, seconds
from storage.schema import queue_latest, queue_sample_blobs, queue_samples, series

RESUME_HORIZON_S = 86400.0


class RecentInterval(NamedTuple):
    """One stored interval of a queue, as the collector's rate windows hold it."""

    library: str
    queue_name: str
    sampled_at_s: float
    interval_s: float
    finished_delta: int
    failed_delta: int
    timeout_delta: int
    processing_sketch: bytes | None
    wait_sketch: bytes | None


def recent_intervals(engine: Engine, since_s: float) -> list[RecentInterval]:
    """Every queue's snapshots that end after `since_s`, oldest first (to rebuild the rate windows)."""
    t, b = queue_samples, queue_sample_blobs
    after_ms = math.floor(since_s * 1000.0 + 1e-6)
    statement = (select(series.c.library, series.c.queue_name, seconds(t.c.sampled_at_ms),
                        seconds(t.c.interval_ms), t.c.finished_delta, t.c.failed_delta, t.c.timeout_delta,
                        b.c.processing_sketch, b.c.wait_sketch)
                 .select_from(samples_join(blobs=True))
                 .where(and_(t.c.series_id.in_(select(series.c.id)), t.c.sampled_at_ms > after_ms))
                 .order_by(t.c.sampled_at_ms))
    with engine.connect() as conn:
        return [RecentInterval(*row) for row in conn.execute(statement)]


class ResumePoint(NamedTuple):
    finished_cursor: float | None
    failed_cursor: float | None
    cursor_state: str | None
    sampled_at_s: float


def latest_cursors(engine: Engine, *, library: str = "rq",
                   horizon_s: float = RESUME_HORIZON_S) -> dict[str, ResumePoint]:
    """Cursors of each queue's newest snapshot within the horizon (older ones would count a stale backlog)."""
    t = queue_latest
    statement = latest_select([series.c.queue_name, t.c.finished_cursor, t.c.failed_cursor, t.c.cursor_state,
                               t.c.sampled_at_ms]).where(series.c.library == library)
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    if not rows:
        return {}
    newest_ms = max(row[-1] for row in rows)
    return {name: ResumePoint(fin, fail, state, at_ms / 1000.0) for name, fin, fail, state, at_ms in rows
            if at_ms >= newest_ms - horizon_s * 1000.0}
