"""Server-sent events and the Prometheus endpoint over real HTTP."""
from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from storage.writer import acknowledge_alert
from tests.api.conftest import API, start_api
from core.alert_rules import AlertChange
from storage.writer import apply_alert_changes


def _read_events(url: str, headers: dict, wanted: int, timeout_s: float, started: threading.Event) -> list:
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", url, headers=headers, timeout=timeout_s) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            started.set()
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[len("data: "):])))
                if len(events) >= wanted:
                    break
            if time.monotonic() > deadline:
                break
    return events


def test_events_stream_alert_changes_from_any_process(api_site):
    other = api_site.engine
    open_alert = httpx.get(api_site.url + API + "/alerts", headers=api_site.headers(),
                           params={"acknowledged": "true"}, timeout=10).json()
    started = threading.Event()
    result: list = []
    reader = threading.Thread(target=lambda: result.extend(
        _read_events(api_site.url + API + "/events", api_site.headers(), 2, 20, started)))
    reader.start()
    assert started.wait(10)
    time.sleep(1.5)  # the stream has taken its starting point
    now_s = time.time()
    opened = AlertChange("opened", f"alert-{int(now_s)}-sse-queue-queue_depth", "sse-queue", "queue_depth",
                         "critical", "Queue depth above critical threshold", 5000.0, 1000.0)
    with other.begin() as conn:  # a collector elsewhere opens a critical alert
        apply_alert_changes(conn, [opened], now_s)
    acknowledge_alert(other, f"alert-{int(now_s)}-sse-queue-queue_depth", "ops@example.com", now_s + 1)
    reader.join(25)
    names = [name for name, _ in result]
    assert names == ["alert:created", "alert:acknowledged"], result
    assert result[0][1]["queueName"] == "sse-queue" and result[1][1]["acknowledgedBy"] == "ops@example.com"
    assert open_alert is not None


def test_events_need_an_admin(api_site):
    response = httpx.get(api_site.url + API + "/events", headers=api_site.headers(api_site.viewer), timeout=5)
    assert response.status_code == 403


def test_metrics_in_prometheus_format(api_site):
    assert httpx.get(api_site.url + "/metrics", timeout=10).status_code == 401
    response = httpx.get(api_site.url + "/metrics", headers=api_site.headers(), timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'queuewatch_queue_waiting_jobs{library="rq",queue="email-campaigns"} 215.0' in text
    assert 'queuewatch_queue_status{library="rq",queue="email-campaigns",status="warning"} 1.0' in text
    assert 'queuewatch_open_alerts{queue="email-campaigns",severity="warning",type="queue_depth"}' in text
    assert 'queuewatch_queue_processing_time_seconds{library="rq",quantile="0.95",queue="email-campaigns"}' in text
    # no live worker of the queue was measured: no memory sample at all, never 0
    assert 'queuewatch_queue_memory_usage_megabytes{library="rq",queue="email-campaigns"}' not in text


@pytest.mark.parametrize("access,status", [("public", 200), ("off", 404)])
def test_metrics_access_is_configurable(api_site, access, status):
    proc, url = start_api(api_site.db_url, api_site.redis_url, env={"QUEUEWATCH_METRICS_ACCESS": access})
    try:
        assert httpx.get(url + "/metrics", timeout=10).status_code == status
    finally:
        proc.terminate()
        proc.wait(timeout=10)
