"""REDIS_ERROR when the collector cannot reach Redis, INTERNAL_ERROR without details when the database breaks."""
from __future__ import annotations

import time

import httpx

from accounts.accounts import add_user, issue_token
from storage.engine import make_engine
from storage.writer import record_outage
from tests.api.conftest import API, start_api
from tests.conftest import free_port
from tests.storage.test_writer import _cycle


def _site(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'queuewatch.db'}"
    engine = make_engine(db_url)
    add_user(engine, "admin@example.com", "ADMIN", "correct horse")
    token, _ = issue_token(engine, "admin@example.com")
    return engine, db_url, {"Authorization": f"Bearer {token}"}


def test_redis_error_while_the_collector_cannot_reach_redis(tmp_path):
    engine, db_url, headers = _site(tmp_path)
    now_s = time.time()
    _cycle(engine, now_s - 20, emails=250)
    record_outage(engine, now_s - 10, now_s - 9, "Redis unreachable (rq): Error 111 connecting. Connection refused.")
    proc, url = start_api(db_url, f"redis://127.0.0.1:{free_port()}/0")
    try:
        for path in ("/health", "/dashboard", "/queues/health", "/queues/emails/metrics", "/workers/memory",
                     "/memory/current"):
            response = httpx.get(url + API + path, headers=headers, timeout=10)
            assert response.status_code == 500, path
            body = response.json()
            assert body["code"] == "REDIS_ERROR" and body["error"] == "Monitoring system temporarily unavailable"
        assert httpx.get(url + API + "/alerts", headers=headers, timeout=10).status_code == 200
        assert httpx.get(url + API + "/queues/emails/execution-stats", headers=headers, timeout=10).status_code == 200
        _cycle(engine, time.time(), emails=250)  # the collector reached Redis again
        assert httpx.get(url + API + "/dashboard", headers=headers, timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_internal_error_hides_the_cause(tmp_path):
    engine, db_url, headers = _site(tmp_path)
    _cycle(engine, time.time(), emails=3)
    proc, url = start_api(db_url, f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert httpx.get(url + API + "/dashboard", headers=headers, timeout=10).status_code == 200
        with engine.begin() as conn:  # the table the summary reads is gone
            conn.exec_driver_sql("DROP TABLE host_snapshots")
        response = httpx.get(url + API + "/health", headers=headers, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "An error occurred. Please try again.",
                               "code": "INTERNAL_ERROR"}
    assert "host_snapshots" not in response.text and "Traceback" not in response.text
