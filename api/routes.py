"""The nine endpoints under /api/admin/queue-system/ (spec §1–§5)."""
from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from api import schemas
from api.auth import require_admin
from api.errors import ApiError
from storage.memory_current import current_memory, host_memory_stats
from storage.queries_common import iso_utc
from accounts.accounts import User
from storage import queries_alerts, queries_latest, queries_workers
from storage.executions import execution_stats
from storage.status import collector_status
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


def _require_fresh_data(request: Request) -> None:
    """REDIS_ERROR when the collector's newest cycle could not reach Redis: current figures would be stale."""
    status = collector_status(_state(request).engine)
    if status["redis_down"]:
        raise ApiError("REDIS_ERROR", details={"lastSuccessfulCollection": status["last_ok_at_s"]})


def _require_queue(request: Request, queue_name: str) -> None:
    if not queries_latest.queue_exists(_state(request).engine, queue_name):
        raise ApiError("INVALID_QUEUE_NAME", details={"queueName": queue_name})


@router.get("/health", response_model=schemas.QueueSystemHealthResponse, summary="Overall system health")
def system_health(request: Request) -> dict[str, Any]:
    _require_fresh_data(request)
    state = _state(request)
    summary = queries_latest.dashboard_summary(state.engine)
    workers = queries_workers.worker_memory_summary(state.engine, state.settings.thresholds)
    memory = host_memory_stats(state.engine)
    timestamp = summary.pop("timestamp") or memory["timestamp"]
    workers.pop("workers")
    healthy = summary["criticalQueues"] == 0 and summary["warningQueues"] == 0
    return {"timestamp": timestamp, "healthy": healthy, "queues": summary, "workers": workers, "memory": memory}


@router.get("/dashboard", response_model=schemas.DashboardSummaryResponse, summary="Dashboard summary")
def dashboard(request: Request) -> dict[str, Any]:
    _require_fresh_data(request)
    summary = queries_latest.dashboard_summary(_state(request).engine)
    summary["timestamp"] = summary["timestamp"] or _now_iso()
    return summary


@router.get("/queues/health", response_model=list[schemas.QueueHealthStatus], summary="Health of every queue")
def queues_health(request: Request) -> list[dict[str, Any]]:
    _require_fresh_data(request)
    return queries_latest.health_statuses(_state(request).engine)


@router.get("/queues/{queueName}/metrics", response_model=schemas.QueueMetricsResponse,
            response_model_exclude_none=True, summary="Metrics of one queue")
def queue_metrics(request: Request, queueName: str = QueueName,
                  history: bool = Query(False, description="include historical metrics"),
                  historyLimit: int = Query(100, ge=1, le=1000, description="historical data points")
                  ) -> dict[str, Any]:
    _require_queue(request, queueName)
    _require_fresh_data(request)
    engine = _state(request).engine
    rows = queries_latest.queue_metrics_history(engine, queueName, limit=historyLimit + 1 if history else 1)
    body: dict[str, Any] = {"current": rows[0]}
    if history:
        body["history"] = rows[1:]
    return body


@router.get("/alerts", response_model=list[schemas.Alert], response_model_exclude_none=True,
            summary="Active alerts")
def active_alerts(request: Request,
                  severity: Literal["warning", "critical"] | None = Query(None),
                  queueName: str | None = Query(None, min_length=1, max_length=255),
                  acknowledged: bool = Query(False, description="false: only unacknowledged")
                  ) -> list[dict[str, Any]]:
    if queueName is not None:
        _require_queue(request, queueName)
    return queries_alerts.list_alerts(_state(request).engine, severity=severity, queue_name=queueName,
                                      acknowledged=acknowledged, open_only=True)


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
def workers_memory(request: Request) -> dict[str, Any]:
    _require_fresh_data(request)
    state = _state(request)
    return queries_workers.worker_memory_summary(state.engine, state.settings.thresholds)


@router.get("/memory/current", response_model=schemas.CurrentMemoryResponse, summary="Current system memory")
def memory_current(request: Request) -> dict[str, Any]:
    _require_fresh_data(request)
    state = _state(request)
    return current_memory(state.engine, state.settings.thresholds.default)


@router.get("/queues/{queueName}/execution-stats", response_model=schemas.ExecutionStatsResponse,
            summary="Execution time statistics of one queue")
def queue_execution_stats(request: Request, queueName: str = QueueName) -> dict[str, Any]:
    _require_queue(request, queueName)
    return execution_stats(_state(request).engine, queueName)


def _now_iso() -> str:
    return iso_utc(time.time())
