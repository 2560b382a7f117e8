"""GET /metrics in the Prometheus text format; access set by QUEUEWATCH_METRICS_ACCESS (admin, public, off)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import bearer_scheme, require_admin
from api.errors import ApiError
from api.exposition import alert_families, capacity_families, queue_families, worker_families
from storage.queries_alerts import open_alert_counts
from storage.queries_capacity import all_capacity
from storage.queries_latest import latest_snapshots
from storage.queries_workers import worker_table

router = APIRouter()


class _StoredState:
    """A prometheus_client collector that reads the database at scrape time."""

    def __init__(self, app_state):
        self.state = app_state

    def collect(self):
        engine = self.state.engine
        queues = latest_snapshots(engine)
        if not queues.empty:
            queues = queues[queues["current"]]
        yield from queue_families(queues.to_dict("records"))
        workers = worker_table(engine, self.state.settings.thresholds)
        if not workers.empty:
            workers = workers[workers["current"]]
        yield from worker_families(workers.to_dict("records"))
        yield from alert_families(open_alert_counts(engine))
        yield from capacity_families(all_capacity(engine, wait_target_s=self.state.settings.wait_target_s))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, response: Response,
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Response:
    access = request.app.state.settings.metrics_access
    if access == "off":
        raise ApiError("NOT_FOUND")
    if access == "admin":
        require_admin(request, response, credentials)
    cache = request.app.state.cache
    body = cache.get("metrics", cache.stamp(), lambda: exposition_text(request.app.state), stale_ok=True)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers=dict(response.headers))


def exposition_text(app_state) -> bytes:
    """The stored state in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoredState(app_state))
    return generate_latest(registry)
