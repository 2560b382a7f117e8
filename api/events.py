"""GET /api/admin/queue-system/events: the spec's push events as a server-sent-events stream.

Events come from the database, so changes made by any process (collector, dashboard, another API process)
reach every stream: alert:created (an alert opened or escalated), alert:acknowledged, queue:health-changed,
worker:recycled (a worker flagged for recycling went away or restarted), memory:warning / memory:critical
(the host's memory status entered that level).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from api.auth import require_admin
from storage.memory_current import current_memory
from storage.alert_feed import events_after, newest_event_id
from storage.queries_alerts import SPEC_TYPES
from storage.queries_latest import health_statuses
from storage.queries_workers import worker_table

POLL_S = 1.0
KEEPALIVE_S = 15.0
ALERT_EVENTS = {"opened": "alert:created", "escalated": "alert:created", "acknowledged": "alert:acknowledged"}

router = APIRouter(prefix="/api/admin/queue-system")


class EventTracker:
    """Remembers what a stream has seen and turns database changes into events."""

    def __init__(self, engine: Engine, thresholds):
        self.engine = engine
        self.thresholds = thresholds
        self.last_event_id = newest_event_id(engine)
        self.statuses = {h["queueName"]: h["status"] for h in health_statuses(engine)}
        self.recycling = _to_recycle(self._current_workers())
        self.memory_level = self._memory_level()[0]

    def _current_workers(self) -> list[dict[str, Any]]:
        rows = worker_table(self.engine, self.thresholds)
        return [] if rows.empty else rows[rows["current"]].to_dict("records")

    def _memory_level(self) -> tuple[str, dict[str, Any]]:
        memory = current_memory(self.engine, self.thresholds.default)
        level = "critical" if memory["status"]["exceedsCritical"] else \
            "warning" if memory["status"]["exceedsWarning"] else "ok"
        return level, memory["stats"]

    def poll(self) -> list[tuple[str, Any]]:
        events: list[tuple[str, Any]] = []
        for item in events_after(self.engine, self.last_event_id, ALERT_EVENTS):
            self.last_event_id = item.event_id
            if item.alert["type"] in SPEC_TYPES:  # the spec's Alert only (system alerts: /system-alerts)
                events.append((ALERT_EVENTS[item.change], item.alert))
        for health in health_statuses(self.engine):
            if self.statuses.get(health["queueName"]) != health["status"]:
                self.statuses[health["queueName"]] = health["status"]
                events.append(("queue:health-changed", health))
        workers = self._current_workers()
        live = {r["worker_name"]: r["birth_at_s"] for r in workers}
        for worker, (birth_s, queues) in self.recycling.items():
            if worker not in live or live[worker] != birth_s:
                events.append(("worker:recycled", {"workerId": worker, "queueName": queues}))
        self.recycling = _to_recycle(workers)
        level, stats = self._memory_level()
        if level != self.memory_level and level in ("warning", "critical"):
            events.append((f"memory:{level}", stats))
        self.memory_level = level
        return events


def _to_recycle(workers: list[dict[str, Any]]) -> dict[str, tuple[float | None, str]]:
    """Workers flagged for recycling: name -> (birth time, queues)."""
    return {r["worker_name"]: (r["birth_at_s"], r["queues"]) for r in workers if r["should_recycle"]}


def format_event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/events", dependencies=[Depends(require_admin)], include_in_schema=False)
async def events(request: Request) -> StreamingResponse:
    state = request.app.state
    tracker = await run_in_threadpool(EventTracker, state.engine, state.settings.thresholds)

    async def stream() -> AsyncIterator[str]:
        yield ": connected\n\n"
        idle_s = 0.0
        while not await request.is_disconnected():
            for name, data in await run_in_threadpool(tracker.poll):
                yield format_event(name, data)
                idle_s = 0.0
            await asyncio.sleep(POLL_S)
            idle_s += POLL_S
            if idle_s >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                idle_s = 0.0

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
