"""The collector's own state as stored: its newest cycle and its newest successful one."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from storage.schema import alert_events, cycles

REDIS_OUTAGE_PREFIX = "Redis unreachable"


def collector_status(engine: Engine) -> dict[str, Any]:
    """{latest: newest cycle or None, last_ok_at_s, redis_down: the newest cycle failed to reach Redis}."""
    with engine.connect() as conn:
        latest = conn.execute(select(cycles).order_by(cycles.c.id.desc()).limit(1)).mappings().first()
        last_ok = conn.execute(select(cycles.c.finished_at_s).where(cycles.c.ok.is_(True))
                               .order_by(cycles.c.id.desc()).limit(1)).scalar()
    redis_down = bool(latest and not latest["ok"] and (latest["error"] or "").startswith(REDIS_OUTAGE_PREFIX))
    return {"latest": dict(latest) if latest else None, "last_ok_at_s": last_ok, "redis_down": redis_down}


def answer_stamp(engine: Engine) -> dict[str, Any]:
    """What the API's per-cycle answers depend on, in one statement: the newest cycle's id, whether it failed
    to reach Redis, the newest successful cycle's end and the newest alert event's id (0 when none)."""
    newest = select(func.max(cycles.c.id)).scalar_subquery()
    of_newest = [select(cycles.c[name]).where(cycles.c.id == newest).scalar_subquery().label(name)
                 for name in ("ok", "error")]
    last_ok = (select(cycles.c.finished_at_s).where(cycles.c.ok.is_(True)).order_by(cycles.c.id.desc())
               .limit(1).scalar_subquery().label("last_ok_at_s"))
    event = select(func.coalesce(func.max(alert_events.c.id), 0)).scalar_subquery().label("event_id")
    with engine.connect() as conn:
        row = conn.execute(select(newest.label("id"), *of_newest, last_ok, event)).mappings().one()
    redis_down = bool(row["id"] is not None and not row["ok"]
                      and (row["error"] or "").startswith(REDIS_OUTAGE_PREFIX))
    return {"cycle_id": row["id"], "redis_down": redis_down, "last_ok_at_s": row["last_ok_at_s"],
            "alert_event_id": int(row["event_id"])}


def newest_cycle_at_s(engine: Engine) -> float | None:
    """When the newest stored cycle (successful or an outage) finished; None when none is stored."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(cycles.c.finished_at_s))).scalar()
