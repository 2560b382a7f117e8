"""API reads never write: they answer while another process holds the write lock, and leave the file as it was."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.api.conftest import API, start_api

GET_PATHS = [API + "/health", API + "/dashboard", API + "/queues/health",
             API + "/queues/email-campaigns/metrics?history=true&historyLimit=50", API + "/alerts",
             API + "/alerts?acknowledged=true", API + "/workers/memory", API + "/memory/current",
             API + "/queues/email-campaigns/execution-stats", API + "/queues/reports/advice", "/metrics",
             "/openapi.json", "/docs", "/redoc"]
LOCK_HELD_S = 15.0
ANSWER_WITHIN_S = 5.0

_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE api_tokens SET name = name")  # an uncommitted write, rolled back at the end
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def _path(db_url: str) -> Path:
    return Path(make_url(db_url).database)


def _dump(db_url: str) -> list[str]:
    with sqlite3.connect(_path(db_url)) as conn:
        return list(conn.iterdump())


def _timed_get(http: httpx.Client, url: str, headers: dict[str, str]) -> tuple[int, float]:
    started = time.monotonic()
    response = http.get(url, headers=headers)
    return response.status_code, time.monotonic() - started


def test_every_get_answers_while_another_process_holds_the_write_lock(api_site):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(_path(api_site.db_url)), str(LOCK_HELD_S)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        latencies: dict[str, tuple[int, float]] = {}
        with httpx.Client(timeout=ANSWER_WITHIN_S + 10) as http:
            for path in GET_PATHS:
                latencies[path] = _timed_get(http, api_site.url + path, api_site.headers())
            started = time.monotonic()
            with http.stream("GET", api_site.url + API + "/events", headers=api_site.headers()) as stream:
                latencies[API + "/events"] = (stream.status_code, time.monotonic() - started)
        assert holder.poll() is None, "the lock was released before the reads were done"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    print("\nlatency while the database is write-locked:")
    for path, (status, seconds) in latencies.items():
        print(f"  {status} {seconds * 1000:7.1f} ms  GET {path}")
    assert {path: status for path, (status, _) in latencies.items()} == {path: 200 for path in latencies}
    assert max(seconds for _, seconds in latencies.values()) < ANSWER_WITHIN_S


def test_no_get_changes_the_database_and_token_use_is_written_apart(api_site):
    proc, url = start_api(api_site.db_url, api_site.redis_url)
    try:
        before = _dump(api_site.db_url)
        with httpx.Client(timeout=10) as http:
            for path in GET_PATHS:
                for token in (api_site.admin, api_site.viewer, api_site.revoked, "qw_unknown"):
                    http.get(url + path, headers=api_site.headers(token))
        assert _dump(api_site.db_url) == before
    finally:
        proc.terminate()  # a clean stop writes the token use noted in memory
        proc.wait(timeout=20)
    with sqlite3.connect(_path(api_site.db_url)) as conn:
        used = dict(conn.execute("SELECT token_prefix, last_used_at_s FROM api_tokens"))
    assert used[api_site.admin[:10]] is not None and used[api_site.viewer[:10]] is not None
    assert used[api_site.revoked[:10]] is None
