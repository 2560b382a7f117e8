"""The collector's own state as stored: its newest cycle and its newest successful one."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from storage.schema import cycles

REDIS_OUTAGE_PREFIX = "Redis unreachable"


def collector_status(engine: Engine) -> dict[str, Any]:
    """{latest: newest cycle or None, last_ok_at_s, redis_down: the newest cycle failed to reach Redis}."""
    with engine.connect() as conn:
        latest = conn.execute(select(cycles).order_by(cycles.c.id.desc()).limit(1)).mappings().first()
        last_ok = conn.execute(select(cycles.c.finished_at_s).where(cycles.c.ok.is_(True))
                               .order_by(cycles.c.id.desc()).limit(1)).scalar()
    redis_down = bool(latest and not latest["ok"] and (latest["error"] or "").startswith(REDIS_OUTAGE_PREFIX))
    return {"latest": dict(latest) if latest else None, "last_ok_at_s": last_ok, "redis_down": redis_down}


def newest_cycle_at_s(engine: Engine) -> float | None:
    """When the newest stored cycle (successful or an outage) finished; None when none is stored."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(cycles.c.finished_at_s))).scalar()
