"""The collector's resume point: the newest snapshot's registry cursors per queue."""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Engine, and_, func, select

from storage.schema import queue_snapshots

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
    t = queue_snapshots
    statement = (select(t.c.library, t.c.queue_name, t.c.sampled_at_s, t.c.interval_s, t.c.finished_delta,
                        t.c.failed_delta, t.c.timeout_delta, t.c.processing_sketch, t.c.wait_sketch)
                 .where(t.c.sampled_at_s > since_s).order_by(t.c.sampled_at_s))
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
    t = queue_snapshots
    with engine.connect() as conn:
        newest_s = conn.execute(select(func.max(t.c.sampled_at_s)).where(t.c.library == library)).scalar()
        if newest_s is None:
            return {}
        latest = (select(t.c.queue_name, func.max(t.c.sampled_at_s).label("at_s"))
                  .where(and_(t.c.library == library, t.c.sampled_at_s >= newest_s - horizon_s))
                  .group_by(t.c.queue_name).subquery())
        rows = conn.execute(
            select(t.c.queue_name, t.c.finished_cursor, t.c.failed_cursor, t.c.cursor_state, t.c.sampled_at_s)
            .join(latest, and_(t.c.queue_name == latest.c.queue_name, t.c.sampled_at_s == latest.c.at_s))
            .where(t.c.library == library))
        return {name: ResumePoint(fin, fail, state, at_s) for name, fin, fail, state, at_s in rows}
