"""Extensions beside the spec's endpoints: silences, bulk acknowledgement, system alerts (admin auth, the
spec's error envelope)."""
from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api import schemas
from api.auth import require_admin
from api.errors import ApiError
from api.routes import ERRORS, PREFIX
from core.silences import parse_duration_s
from core.system_alerts import SYSTEM_TYPES
from storage import queries_alerts
from storage.silences import ALERT_TYPES, add_silence, expire_silence, list_silences
from storage.writer import acknowledge_alerts

router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_admin)], responses=ERRORS, tags=["extensions"])
MAX_FOR_S = 90 * 86400.0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewSilence(Strict):
    queue: str | None = Field(None, min_length=1, max_length=255, description="queue name or glob ('bulk-*')")
    library: Literal["rq", "bullmq", "celery"] | None = None
    type: Literal[ALERT_TYPES] | None = None  # type: ignore[valid-type]
    severity: Literal["warning", "critical"] | None = None
    duration: str = Field(..., min_length=1, max_length=32, description="90s, 15m, 2h30m, 1d or seconds")
    comment: str = Field(..., min_length=1, max_length=2000)


class Silence(Strict):
    id: int
    queue: str | None
    library: str | None
    type: str | None
    severity: str | None
    startsAt: schemas.Timestamp
    endsAt: schemas.Timestamp
    comment: str
    createdBy: str | None
    createdAt: schemas.Timestamp
    active: bool
    silencedAlerts: int | None = None


class BulkAcknowledge(Strict):
    alertIds: list[str] = Field(..., min_length=1, max_length=500)
    forSeconds: float | None = Field(None, gt=0, le=MAX_FOR_S, description="snooze: acknowledged until then")


class BulkAcknowledgeResponse(Strict):
    success: bool
    alerts: list[schemas.Alert]
    notFound: list[str]


class SystemAlert(Strict):
    id: str
    severity: Literal["warning", "critical"]
    source: str = Field(description="the Redis URL (no password) or '(collector)'")
    type: Literal[tuple(sorted(SYSTEM_TYPES))]  # type: ignore[valid-type]
    message: str
    value: float
    threshold: float
    timestamp: schemas.Timestamp
    acknowledged: bool
    silenced: bool


@router.get("/silences", response_model=list[Silence], summary="Silences (extension)")
def silences(request: Request, all: bool = Query(False, description="include expired silences")) -> list[dict]:
    return list_silences(request.app.state.engine, time.time(), include_expired=all)


@router.post("/silences", response_model=Silence, status_code=201, summary="Add a silence (extension)")
def create_silence(request: Request, body: NewSilence) -> dict[str, Any]:
    try:
        duration_s = parse_duration_s(body.duration)
        return add_silence(request.app.state.engine, duration_s=duration_s, comment=body.comment, now_s=time.time(),
                           queue_glob=body.queue, library=body.library, alert_type=body.type,
                           severity=body.severity, created_by=request.state.user.email)
    except ValueError as exc:
        raise ApiError("INVALID_PARAMETERS", details=[{"parameter": "body", "message": str(exc)}]) from exc


@router.post("/silences/{silenceId}/expire", response_model=Silence, summary="Expire a silence now (extension)",
             responses={404: {"model": schemas.ErrorResponse, "description": "SILENCE_NOT_FOUND"}})
def end_silence(request: Request, silenceId: int = Path(..., ge=1, le=2**31 - 1)) -> dict[str, Any]:
    silence = expire_silence(request.app.state.engine, silenceId, time.time())
    if silence is None:
        raise ApiError("SILENCE_NOT_FOUND", details={"silenceId": silenceId})
    return silence


@router.post("/alerts/acknowledge", response_model=BulkAcknowledgeResponse, response_model_exclude_none=True,
             summary="Acknowledge several alerts (extension)")
def bulk_acknowledge(request: Request, body: BulkAcknowledge) -> dict[str, Any]:
    now_s = time.time()
    until_s = now_s + body.forSeconds if body.forSeconds else None
    rows = acknowledge_alerts(request.app.state.engine, body.alertIds, request.state.user.email, now_s,
                              until_s=until_s)
    found = [queries_alerts.alert_dict(row, now_s) for row in rows.values()
             if row is not None and row["alert_type"] not in SYSTEM_TYPES]
    missing = [alert_id for alert_id, row in rows.items() if row is None]
    return {"success": not missing, "alerts": found, "notFound": missing}


@router.get("/system-alerts", response_model=list[SystemAlert], summary="Open system alerts (extension)")
def system_alerts(request: Request) -> list[dict[str, Any]]:
    rows = queries_alerts.list_alerts(request.app.state.engine, acknowledged=None, types=sorted(SYSTEM_TYPES),
                                      details=True)
    return [{"id": a["id"], "severity": a["severity"], "source": a["queueName"], "type": a["type"],
             "message": a["message"], "value": a["value"], "threshold": a["threshold"], "timestamp": a["timestamp"],
             "acknowledged": a["acknowledged"], "silenced": a["silencedBy"] is not None} for a in rows]
