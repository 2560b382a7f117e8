"""Extension: capacity and timeout advice per queue (GET /queues/{queueName}/advice; admin auth)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_admin
from api.errors import ApiError
from api.routes import ERRORS, PREFIX, QueueName
from storage.queries_capacity import FLOW_WINDOW_S, queue_advice

router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_admin)], responses=ERRORS, tags=["extensions"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapacityAdvice(Strict):
    arrivalPerSecond: float | None = Field(description="jobs ended plus backlog growth per second (last 5 min)")
    completionPerSecond: float | None = Field(description="jobs ended (finished or failed) per second")
    busyWorkers: float | None = Field(description="mean active jobs over the window")
    meanRunSeconds: float | None
    offeredLoad: float | None = Field(description="arrival rate × mean run time: workers kept busy on average")
    workersNeeded: int | None = Field(description="fewest workers keeping the p95 wait under the target (M/M/c)")
    waitTargetSeconds: float
    backlog: int | None = Field(description="waiting + active jobs at the newest snapshot")
    drainSeconds: float | None = Field(description="time to empty the backlog at the current rates (null: n/a or "
                                                   "growing)")
    growing: bool
    drain: str = Field(description="'drains in 4 min', 'growing', 'empty' or 'n/a'")
    windowSeconds: float | None


class TimeoutAdviceModel(Strict):
    suggestedSeconds: float | None = Field(description="p99.9 run time × 1.5, rounded up")
    configuredSeconds: float | None = Field(description="the job timeout the library stores (RQ); null elsewhere")
    p99Seconds: float | None
    p999Seconds: float | None
    maxSeconds: float | None
    verdict: Literal["cuts_off_normal_jobs", "far_above_run_times", "ok"] | None
    sampleCount: int


class QueueAdvice(Strict):
    queueName: str
    library: str
    capacity: CapacityAdvice
    timeout: TimeoutAdviceModel


def advice_body(advice: dict[str, Any]) -> dict[str, Any]:
    """The stored-state advice (storage.queries_capacity.queue_advice) in the API's field names."""
    c, t = advice["capacity"], advice["timeout"]
    return {
        "queueName": advice["queue_name"], "library": advice["library"],
        "capacity": {"arrivalPerSecond": c["arrival_per_s"], "completionPerSecond": c["completion_per_s"],
                     "busyWorkers": c["busy_workers"], "meanRunSeconds": c["mean_run_s"],
                     "offeredLoad": c["offered_load"], "workersNeeded": c["workers_needed"],
                     "waitTargetSeconds": c["wait_target_s"], "backlog": c["backlog"],
                     "drainSeconds": c["drain_s"], "growing": c["growing"], "drain": c["drain_text"],
                     "windowSeconds": c["window_s"]},
        "timeout": {"suggestedSeconds": t["suggested_s"], "configuredSeconds": t["configured_s"],
                    "p99Seconds": t["p99_s"], "p999Seconds": t["p999_s"], "maxSeconds": t["max_s"],
                    "verdict": t["verdict"], "sampleCount": t["sample_count"]},
    }


@router.get("/queues/{queueName}/advice", response_model=QueueAdvice,
            summary="Capacity and timeout advice (extension)",
            description=f"Arrival and completion rates over the last {FLOW_WINDOW_S:g} s of snapshots, workers "
                        "needed for the p95 wait target (QUEUEWATCH_WAIT_TARGET_S), drain time, and a suggested "
                        "job timeout from all stored run times. Figures not measured are null.")
def advice(request: Request, queueName: str = QueueName,
           library: Literal["rq", "bullmq", "celery"] | None = Query(None, description="when names repeat")) -> Any:
    state = request.app.state
    found = queue_advice(state.engine, queueName, library=library, wait_target_s=state.settings.wait_target_s)
    if found is None:
        raise ApiError("INVALID_QUEUE_NAME", details={"queueName": queueName})
    return advice_body(found)
