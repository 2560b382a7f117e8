"""A real API server (uvicorn subprocess) over data from a real collector run against real RQ workers."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import pytest
import redis
from rq import Queue

from collector.loop import Collector
from collector.rq_reader import RQReader
from accounts.accounts import add_user, issue_token
from config.settings import load_settings
from storage.engine import make_engine
from storage.users import revoke_tokens
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import run_burst_worker
from tests.conftest import REPO_ROOT, free_port

API = "/api/admin/queue-system"


@dataclass
class ApiSite:
    urls: list[str]
    db_url: str
    redis_url: str
    admin: str
    viewer: str
    revoked: str
    engine: object

    @property
    def url(self) -> str:
        return self.urls[0]

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}


def start_api(db_url: str, redis_url: str, *, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """An API server; its stale-data watch (which writes) is off unless `env` turns it on."""
    env = {"QUEUEWATCH_STALE_CHECK_S": "0", **(env or {})}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuewatch.cli", "api", "--port", str(port), "--db", db_url, "--redis", redis_url],
        cwd=REPO_ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/docs", timeout=1)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"API did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)


def collect_real_data(redis_url: str, db_url: str) -> None:
    """Three collector cycles around real RQ work: finished, failed, timed-out jobs and a depth alert."""
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url)
    collector = Collector(settings, make_engine(db_url), RQReader(client, settle_s=0))
    collector.run_cycle()
    emails, reports = Queue("email-campaigns", connection=client), Queue("reports", connection=client)
    for seconds in (0.05, 0.1, 0.15, 0.2) * 5:
        emails.enqueue(rq_jobs.sleep_for, seconds)
    reports.enqueue(rq_jobs.fail)
    reports.enqueue(rq_jobs.sleep_for, 3, job_timeout=1)
    reports.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "email-campaigns", "reports")
    collector.run_cycle()
    for _ in range(215):
        emails.enqueue(rq_jobs.noop)
    collector.run_cycle()


@pytest.fixture(scope="module")
def api_backend(request) -> str:
    """The database under the module's API site: SQLite unless a module parametrizes it (indirect)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="module")
def api_site(redis_server, tmp_path_factory, api_backend, request):
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    db_url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'queuewatch.db'}"
    pg_name = None
    if api_backend == "postgresql":
        databases = request.getfixturevalue("pg_databases")
        pg_name = databases.create()
        db_url = databases.url_of(pg_name)
    collect_real_data(redis_server, db_url)
    engine = make_engine(db_url)
    add_user(engine, "admin@example.com", "ADMIN", "correct horse")
    add_user(engine, "viewer@example.com", "VIEWER", "correct horse")
    admin, _ = issue_token(engine, "admin@example.com")
    viewer, _ = issue_token(engine, "viewer@example.com")
    revoked, revoked_id = issue_token(engine, "admin@example.com", "old")
    revoke_tokens(engine, time.time(), token_id=revoked_id)
    procs = [start_api(db_url, redis_server) for _ in range(2)]
    yield ApiSite([url for _, url in procs], db_url, redis_server, admin, viewer, revoked, engine)
    for proc, _ in procs:
        proc.terminate()
        proc.wait(timeout=10)
    engine.dispose()
    if pg_name is not None:
        request.getfixturevalue("pg_databases").drop(pg_name)
    client.flushall()
