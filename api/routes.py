"""The nine endpoints under /api/admin/queue-system/ (spec §1–§5)."""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Hashable, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import TypeAdapter

from api import schemas
from api.auth import require_admin
from api.cycle_cache import Stamp
from api.errors import ApiError
from api.execution_stats import execution_stats
from storage.memory_current import current_memory, host_memory_stats
from storage.queries_common import iso_utc
from accounts.accounts import User
from storage import queries_alerts, queries_latest, queries_workers
from storage.writer import acknowledge_alert

PREFIX = "/api/admin/queue-system"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorResponse, "description": "INVALID_QUEUE_NAME or INVALID_PARAMETERS"},
    401: {"model": schemas.ErrorResponse, "description": "UNAUTHORIZED"},
    403: {"model": schemas.ErrorResponse, "description": "FORBIDDEN"},
    429: {"model": schemas.RateLimitedResponse, "description": "Rate limit exceeded"},
    500: {"model": schemas.ErrorResponse, "description": "REDIS_ERROR or INTERNAL_ERROR"},
}
QueueName = Path(..., min_length=1, max_length=255, description="Name of the queue")

router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_admin)], responses=ERRORS)


def _state(request: Request):
    return request.app.state


def _stamp(request: Request) -> Stamp:
    """The newest stored cycle and alert event, read once per request."""
    stamp: Stamp | None = getattr(request.state, "stamp", None)
    if stamp is None:
        stamp = request.state.stamp = _state(request).cache.stamp()
    return stamp


def _require_fresh_data(request: Request) -> None:
    """REDIS_ERROR when the collector's newest cycle could not reach Redis: current figures would be stale."""
    stamp = _stamp(request)
    if stamp.redis_down:
        raise ApiError("REDIS_ERROR", details={"lastSuccessfulCollection": stamp.last_ok_at_s})


def _require_queue(request: Request, queue_name: str) -> None:
    engine = _state(request).engine
    if not _state(request).cache.get(("exists", queue_name), _stamp(request),
                                     lambda: queries_latest.queue_exists(engine, queue_name)):
        raise ApiError("INVALID_QUEUE_NAME", details={"queueName": queue_name})


def _shared(request: Request, key: Hashable, compute: Callable[[], Any], model: Any, *,
            exclude_none: bool = False, stale_ok: bool = False) -> Response:
    """The JSON answer for `key` under this request's stamp, computed and encoded once per cycle.

    `stale_ok`: while one request computes a new cycle's answer, the others get the previous cycle's (see
    CycleCache.get); the REDIS_ERROR check always uses this request's stamp.
    """
    def encoded() -> bytes:
        adapter = _adapter(model)
        return adapter.dump_json(adapter.validate_python(compute()), by_alias=True, exclude_none=exclude_none)

    body = _state(request).cache.get(key, _stamp(request), encoded, stale_ok=stale_ok)
    return Response(body, media_type="application/json")


@functools.cache
def _adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)


def _system_health(state) -> dict[str, Any]:
    summary = queries_latest.dashboard_summary(state.engine)
    workers = queries_workers.worker_memory_summary(state.engine, state.settings.thresholds)
    memory = host_memory_stats(state.engine)
    timestamp = summary.pop("timestamp") or memory["timestamp"]
    workers.pop("workers")
    healthy = summary["criticalQueues"] == 0 and summary["warningQueues"] == 0
    return {"timestamp": timestamp, "healthy": healthy, "queues": summary, "workers": workers, "memory": memory}


@router.get("/health", response_model=schemas.QueueSystemHealthResponse, summary="Overall system health")
def system_health(request: Request) -> Response:
    _require_fresh_data(request)
    state = _state(request)
    return _shared(request, "health", lambda: _system_health(state), schemas.QueueSystemHealthResponse, stale_ok=True)


def _dashboard(state) -> dict[str, Any]:
    summary = queries_latest.dashboard_summary(state.engine)
    summary["timestamp"] = summary["timestamp"] or _now_iso()
    return summary


@router.get("/dashboard", response_model=schemas.DashboardSummaryResponse, summary="Dashboard summary")
def dashboard(request: Request) -> Response:
    _require_fresh_data(request)
    state = _state(request)
    return _shared(request, "dashboard", lambda: _dashboard(state), schemas.DashboardSummaryResponse, stale_ok=True)


@router.get("/queues/health", response_model=list[schemas.QueueHealthStatus], summary="Health of every queue")
def queues_health(request: Request) -> Response:
    _require_fresh_data(request)
    engine = _state(request).engine
    return _shared(request, "queues-health", lambda: queries_latest.health_statuses(engine),
                   list[schemas.QueueHealthStatus], stale_ok=True)


def _queue_metrics(engine, queue_name: str, history: bool, history_limit: int) -> dict[str, Any]:
    rows = queries_latest.queue_metrics_history(engine, queue_name, limit=history_limit + 1 if history else 1)
    body: dict[str, Any] = {"current": rows[0]}
    if history:
        body["history"] = rows[1:]
    return body


@router.get("/queues/{queueName}/metrics", response_model=schemas.QueueMetricsResponse,
            response_model_exclude_none=True, summary="Metrics of one queue")
def queue_metrics(request: Request, queueName: str = QueueName,
                  history: bool = Query(False, description="include historical metrics"),
                  historyLimit: int = Query(100, ge=1, le=1000, description="historical data points")
                  ) -> Response:
    _require_queue(request, queueName)
    _require_fresh_data(request)
    engine = _state(request).engine
    limit = historyLimit if history else 0
    return _shared(request, ("metrics", queueName, limit),
                   lambda: _queue_metrics(engine, queueName, history, historyLimit),
                   schemas.QueueMetricsResponse, exclude_none=True, stale_ok=True)


@router.get("/alerts", response_model=list[schemas.Alert], response_model_exclude_none=True,
            summary="Active alerts")
def active_alerts(request: Request,
                  severity: Literal["warning", "critical"] | None = Query(None),
                  queueName: str | None = Query(None, min_length=1, max_length=255),
                  acknowledged: bool = Query(False, description="false: only unacknowledged")
                  ) -> Response:
    if queueName is not None:
        _require_queue(request, queueName)
    # read afresh on every request: acknowledgements, bulk acknowledgements and snoozes that end change it
    # between cycles
    found = queries_alerts.list_alerts(_state(request).engine, severity=severity, queue_name=queueName,
                                       acknowledged=acknowledged, open_only=True)
    adapter = _adapter(list[schemas.Alert])
    return Response(adapter.dump_json(adapter.validate_python(found), by_alias=True, exclude_none=True),
                    media_type="application/json")


@router.post("/alerts/{alertId}/acknowledge", response_model=schemas.AcknowledgeAlertResponse,
             response_model_exclude_none=True, summary="Acknowledge an alert",
             responses={404: {"model": schemas.ErrorResponse, "description": "ALERT_NOT_FOUND"}})
def acknowledge(request: Request, alertId: str = Path(..., min_length=1, max_length=400),
                forSeconds: float | None = Query(None, gt=0, le=90 * 86400,
                                                 description="extension: acknowledge for this long (snooze); "
                                                             "afterwards the alert counts as unacknowledged")
                ) -> dict[str, Any]:
    user: User = request.state.user
    now_s = time.time()
    known = queries_alerts.get_alert(_state(request).engine, alertId)
    if known is None or known["type"] not in queries_alerts.SPEC_TYPES:  # system alerts: see /system-alerts
        raise ApiError("ALERT_NOT_FOUND", details={"alertId": alertId})
    row = acknowledge_alert(_state(request).engine, alertId, user.email, now_s,
                            until_s=now_s + forSeconds if forSeconds else None)
    if row is None:
        raise ApiError("ALERT_NOT_FOUND", details={"alertId": alertId})
    return {"success": True, "alert": queries_alerts.alert_dict(row, now_s)}


@router.get("/workers/memory", response_model=schemas.WorkerMemorySummary, response_model_exclude_none=True,
            summary="Memory of every worker")
def workers_memory(request: Request) -> Response:
    _require_fresh_data(request)
    state = _state(request)
    return _shared(request, "workers-memory",
                   lambda: queries_workers.worker_memory_summary(state.engine, state.settings.thresholds),
                   schemas.WorkerMemorySummary, exclude_none=True, stale_ok=True)


@router.get("/memory/current", response_model=schemas.CurrentMemoryResponse, summary="Current system memory")
def memory_current(request: Request) -> Response:
    _require_fresh_data(request)
    state = _state(request)
    return _shared(request, "memory-current",
                   lambda: current_memory(state.engine, state.settings.thresholds.default),
                   schemas.CurrentMemoryResponse, stale_ok=True)


@router.get("/queues/{queueName}/execution-stats", response_model=schemas.ExecutionStatsResponse,
            summary="Execution time statistics of one queue")
def queue_execution_stats(request: Request, queueName: str = QueueName) -> Response:
    _require_queue(request, queueName)
    state = _state(request)
    return _shared(request, ("execution-stats", queueName),
                   lambda: execution_stats(state.engine, queueName),
                   schemas.ExecutionStatsResponse, stale_ok=True)


def _now_iso() -> str:
    return iso_utc(time.time())
