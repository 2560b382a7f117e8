"""Every endpoint over real HTTP: keys, types and units as shared/spec/monitoring-api.md states them."""
from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import API

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NUMBER = (int, float)
QUEUE_METRICS = {
    "queueName": str, "waiting": int, "active": int, "delayed": int, "failed": int, "completed": int,
    "jobsPerMinute": NUMBER, "errorRate": NUMBER, "timeoutRate": NUMBER, "avgProcessingTimeMs": NUMBER,
    "p50ProcessingTimeMs": NUMBER, "p95ProcessingTimeMs": NUMBER, "p99ProcessingTimeMs": NUMBER,
    "oldestWaitingMs": NUMBER, "memoryUsageMB": NUMBER, "memoryPercentage": NUMBER, "timestamp": "iso",
}
SUMMARY = {"totalQueues": int, "healthyQueues": int, "warningQueues": int, "criticalQueues": int,
           "totalWaiting": int, "totalActive": int, "totalFailed": int, "activeAlerts": int,
           "avgJobsPerMinute": NUMBER, "avgErrorRate": NUMBER}
MEMORY_STATS = {"heapUsed": NUMBER, "heapTotal": NUMBER, "external": NUMBER, "rss": NUMBER,
                "arrayBuffers": NUMBER, "percentage": NUMBER, "timestamp": "iso"}
ALERT = {"id": str, "severity": str, "queueName": str, "type": str, "message": str, "value": NUMBER,
         "threshold": NUMBER, "timestamp": "iso", "acknowledged": bool}
ALERT_OPTIONAL = {"acknowledgedBy": str, "acknowledgedAt": "iso"}
WORKER_STATE = {"workerId": str, "queueName": str, "jobsProcessed": int, "startTime": "iso",
                "lastMemoryCheck": MEMORY_STATS, "shouldRecycle": bool}


pytestmark = pytest.mark.parametrize("api_backend", ["sqlite", "postgresql"], indirect=True, scope="module")
"""Every test of this module runs against an API site on SQLite and one on PostgreSQL."""


def check(value, shape, optional=None, where="body"):
    """Assert that `value` has exactly the keys of `shape` (plus allowed optional ones) with those types."""
    if isinstance(shape, dict):
        assert isinstance(value, dict), where
        optional = optional or {}
        assert set(shape) <= set(value) <= set(shape) | set(optional), f"{where}: {sorted(value)}"
        for key, sub in {**shape, **optional}.items():
            if key in value:
                check(value[key], sub, where=f"{where}.{key}")
    elif shape == "iso":
        assert isinstance(value, str) and ISO.match(value), f"{where}: {value!r}"
    else:
        assert isinstance(value, shape) and not isinstance(value, bool) or shape is bool and isinstance(value, bool), \
            f"{where}: {value!r} is not {shape}"


def get(site, path, **params):
    response = httpx.get(site.url + API + path, headers=site.headers(), params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_health(api_site):
    body = get(api_site, "/health")
    check(body, {"timestamp": "iso", "healthy": bool, "queues": SUMMARY,
                 "workers": {"totalWorkers": int, "totalJobsProcessed": int, "averageMemoryUsage": NUMBER,
                             "workersNeedingRecycle": int},
                 "memory": MEMORY_STATS})
    assert body["queues"]["totalQueues"] == 2 and body["healthy"] is False
    assert body["memory"]["heapTotal"] > 0


def test_dashboard(api_site):
    body = get(api_site, "/dashboard")
    check(body, {**SUMMARY, "timestamp": "iso"})
    assert body["warningQueues"] >= 1 and body["activeAlerts"] >= 1
    assert body["totalWaiting"] == 215


def test_queues_health(api_site):
    body = get(api_site, "/queues/health")
    assert [h["queueName"] for h in body] == sorted(h["queueName"] for h in body)
    for health in body:
        check(health, {"queueName": str, "healthy": bool, "status": str, "issues": list, "metrics": QUEUE_METRICS,
                       "timestamp": "iso"})
        assert health["status"] in ("healthy", "warning", "critical")
    emails = next(h for h in body if h["queueName"] == "email-campaigns")
    assert emails["issues"] == ["Queue depth above warning threshold (215 > 200)",
                                "No live worker for 215 waiting jobs"] and not emails["healthy"]


def test_queue_metrics_with_history(api_site):
    body = get(api_site, "/queues/email-campaigns/metrics")
    check(body, {"current": QUEUE_METRICS})
    assert body["current"]["waiting"] == 215 and body["current"]["p95ProcessingTimeMs"] > 100  # 5-min window
    body = get(api_site, "/queues/email-campaigns/metrics", history="true", historyLimit=50)
    check(body, {"current": QUEUE_METRICS, "history": list})
    assert len(body["history"]) == 1  # the queue is in two stored cycles: the current one and one earlier
    check(body["history"][0], QUEUE_METRICS)
    assert body["history"][0]["timestamp"] < body["current"]["timestamp"]
    assert len(get(api_site, "/queues/email-campaigns/metrics", history="true", historyLimit=1)["history"]) == 1


def test_alerts_and_filters(api_site):
    body = get(api_site, "/alerts")
    assert body, "the depth alert is open"
    for alert in body:
        check(alert, ALERT, ALERT_OPTIONAL)
        assert alert["acknowledged"] is False
    depth = next(a for a in body if a["type"] == "queue_depth")
    assert re.match(r"^alert-\d+-email-campaigns-queue_depth$", depth["id"])
    assert depth["message"] == "Queue depth above warning threshold" and depth["threshold"] == 200
    assert get(api_site, "/alerts", severity="critical", queueName="email-campaigns") == []
    assert [a["id"] for a in get(api_site, "/alerts", queueName="email-campaigns", severity="warning")] == [depth["id"]]


def test_workers_memory(api_site):
    body = get(api_site, "/workers/memory")
    check(body, {"totalWorkers": int, "totalJobsProcessed": int, "averageMemoryUsage": NUMBER,
                 "workersNeedingRecycle": int, "workers": list})
    for worker in body["workers"]:
        check(worker, WORKER_STATE, {"recycleReason": str})


def test_memory_current(api_site):
    body = get(api_site, "/memory/current")
    check(body, {"stats": MEMORY_STATS,
                 "limits": {"softLimitMB": NUMBER, "hardLimitMB": NUMBER, "warningThresholdPercent": NUMBER},
                 "status": {"withinLimits": bool, "exceedsWarning": bool, "exceedsCritical": bool}})
    assert body["limits"] == {"softLimitMB": 512, "hardLimitMB": 1024, "warningThresholdPercent": 75}


def test_execution_stats(api_site):
    body = get(api_site, "/queues/email-campaigns/execution-stats")
    check(body, {"queueName": str, "sampleCount": int, "min": NUMBER, "max": NUMBER, "avg": NUMBER, "p50": NUMBER,
                 "p95": NUMBER, "p99": NUMBER, "recentExecutions": list})
    assert body["sampleCount"] == 20 and len(body["recentExecutions"]) == 20
    assert 50 <= body["min"] <= body["p50"] <= body["p95"] <= body["p99"] <= body["max"] < 1000
    assert all(isinstance(v, NUMBER) for v in body["recentExecutions"])


@pytest.mark.parametrize("path,params,status,code", [
    ("/queues/nope/metrics", {}, 400, "INVALID_QUEUE_NAME"),
    ("/queues/nope/execution-stats", {}, 400, "INVALID_QUEUE_NAME"),
    ("/alerts", {"queueName": "nope"}, 400, "INVALID_QUEUE_NAME"),
    ("/queues/email-campaigns/metrics", {"historyLimit": 5000}, 400, "INVALID_PARAMETERS"),
    ("/queues/email-campaigns/metrics", {"historyLimit": 0}, 400, "INVALID_PARAMETERS"),
    ("/queues/email-campaigns/metrics", {"history": "maybe"}, 400, "INVALID_PARAMETERS"),
    ("/alerts", {"severity": "foo"}, 400, "INVALID_PARAMETERS"),
    ("/alerts", {"acknowledged": "perhaps"}, 400, "INVALID_PARAMETERS"),
])
def test_errors_use_the_envelope(api_site, path, params, status, code):
    response = httpx.get(api_site.url + API + path, headers=api_site.headers(), params=params, timeout=10)
    assert response.status_code == status
    body = response.json()
    check(body, {"success": bool, "error": str, "code": str}, {"details": object})
    assert body["success"] is False and body["code"] == code


def test_unknown_alert_is_404(api_site):
    response = httpx.post(api_site.url + API + "/alerts/alert-1-x-queue_depth/acknowledge",
                          headers=api_site.headers(), timeout=10)
    assert response.status_code == 404 and response.json()["code"] == "ALERT_NOT_FOUND"
