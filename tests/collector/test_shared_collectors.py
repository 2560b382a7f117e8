"""Collectors that share the work: three real `queuewatch collect` processes on one real PostgreSQL read two
real redis-servers with real RQ workers; two are killed with SIGKILL in turn. And one SQLite file refuses a
second collector."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import redis
from rq import Queue
from rq.registry import (
    DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry,
)
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from storage.engine import make_engine
from storage.leases import lease_rows
from storage.schema import queue_snapshots
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import run_burst_worker, start_busy_worker
from tests.conftest import REPO_ROOT, start_redis_server

INTERVAL_S = 1.0
DEPTH_FIELDS = ("waiting", "active", "scheduled", "deferred", "failed", "completed")


@pytest.fixture
def shared_db(postgres_url):
    """A database of its own in the session's PostgreSQL cluster (the collectors migrate it)."""
    name = f"shared_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def _start_collector(db_url: str, redis_urls: list[str], name: str, log_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "QUEUEWATCH_LIBRARIES": "rq", "QUEUEWATCH_COLLECTOR_ID": name,
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(log_dir / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "collect", "--db", db_url,
                             "--redis", ",".join(redis_urls), "--interval", str(INTERVAL_S)],
                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _holders(engine) -> dict[str, str]:
    return {row["target"]: row["owner"] for row in lease_rows(engine) if row["held"]}


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _populate(url: str, prefix: str) -> tuple[redis.Redis, subprocess.Popen]:
    """Two queues with waiting, finished, failed, scheduled and deferred jobs, and a busy worker on a third."""
    import datetime

    client = redis.Redis.from_url(url)
    jobs = Queue(f"{prefix}-jobs", connection=client)
    for _ in range(3):
        jobs.enqueue(rq_jobs.noop)
    jobs.enqueue(rq_jobs.fail)
    run_burst_worker(url, f"{prefix}-jobs")
    waiting = [jobs.enqueue(rq_jobs.noop) for _ in range(4)]
    jobs.enqueue_in(datetime.timedelta(hours=1), rq_jobs.noop)
    jobs.enqueue(rq_jobs.noop, depends_on=waiting[-1])
    mail = Queue(f"{prefix}-mail", connection=client)
    for _ in range(2):
        mail.enqueue(rq_jobs.noop)
    busy = Queue(f"{prefix}-busy", connection=client).enqueue(rq_jobs.sleep_for, 600, job_timeout=900)
    return client, start_busy_worker(url, client, f"{prefix}-busy", busy.id)


def _rq_counts(client: redis.Redis, name: str) -> dict[str, int]:
    return {"waiting": Queue(name, connection=client).count,
            "active": StartedJobRegistry(name, client).get_job_count(cleanup=False),
            "scheduled": ScheduledJobRegistry(name, client).get_job_count(cleanup=False),
            "deferred": DeferredJobRegistry(name, client).get_job_count(cleanup=False),
            "failed": FailedJobRegistry(name, client).get_job_count(cleanup=False),
            "completed": FinishedJobRegistry(name, client).get_job_count(cleanup=False)}


def _snapshots(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(queue_snapshots.c.queue_name, queue_snapshots.c.sampled_at_s,
                                   *[queue_snapshots.c[name] for name in DEPTH_FIELDS])
                            .order_by(queue_snapshots.c.queue_name, queue_snapshots.c.sampled_at_s)).mappings().all()
    return pd.DataFrame(rows)


def test_three_collectors_share_two_redis_and_survive_two_kills(shared_db, tmp_path):
    servers, clients, workers, collectors = [], [], [], {}
    try:
        for prefix in ("a", "b"):
            proc, url = start_redis_server(tmp_path)
            servers.append((proc, url))
            client, worker = _populate(url, prefix)
            clients.append(client)
            workers.append(worker)
        urls = [url for _, url in servers]
        make_engine(shared_db).dispose()  # migrated once, before the collectors race to it
        for name in ("c1", "c2", "c3"):
            collectors[name] = _start_collector(shared_db, urls, name, tmp_path)
        engine = make_engine(shared_db)
        # each collector's share is one target at most once all three are live: two different holders
        _wait_for(lambda: len(set(_holders(engine).values())) == 2 and len(_holders(engine)) == 2, 30,
                  "the two targets held by two collectors")
        shared_from_s = time.time()
        time.sleep(3 * INTERVAL_S)
        killed = []
        for _ in range(2):
            victim = sorted(set(_holders(engine).values()))[0]
            collectors[victim].send_signal(signal.SIGKILL)
            collectors[victim].wait(timeout=10)
            killed.append(victim)
            _wait_for(lambda: len(_holders(engine)) == 2 and not set(_holders(engine).values()) & set(killed),
                      10 * INTERVAL_S, f"the targets of {victim} taken over")
            time.sleep(3 * INTERVAL_S)
        survivor = ({"c1", "c2", "c3"} - set(killed)).pop()
        assert set(_holders(engine).values()) == {survivor}
        until_s = time.time()
        collectors[survivor].send_signal(signal.SIGTERM)
        assert collectors[survivor].wait(timeout=30) == 0
        assert _holders(engine) == {}  # a clean stop gives its leases back

        frame = _snapshots(engine)
        queues = sorted(frame["queue_name"].unique())
        assert queues == ["a-busy", "a-jobs", "a-mail", "b-busy", "b-jobs", "b-mail"]
        for queue in queues:
            times = frame[frame["queue_name"] == queue]["sampled_at_s"]
            window = times[(times >= shared_from_s - 2 * INTERVAL_S) & (times <= until_s)].tolist()
            gaps = [b - a for a, b in zip(window, window[1:])]
            assert len(window) >= 8, (queue, window)
            assert max(gaps) <= 2 * INTERVAL_S + 1.0, (queue, gaps)  # kept up through both kills
            assert min(gaps) >= 0.5 * INTERVAL_S, (queue, gaps)  # one reading per interval, never two
        for client, prefix in zip(clients, ("a", "b")):
            for queue in (f"{prefix}-jobs", f"{prefix}-mail", f"{prefix}-busy"):
                newest = frame[frame["queue_name"] == queue].iloc[-1]
                assert {name: int(newest[name]) for name in DEPTH_FIELDS} == _rq_counts(client, queue), queue
        engine.dispose()
    finally:
        for proc in collectors.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for worker in workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_second_collector_on_one_sqlite_file_is_refused(redis_url, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'one.db'}"
    first = _start_collector(db_url, [redis_url], "first", tmp_path)
    try:
        engine = make_engine(db_url)
        _wait_for(lambda: _holders(engine), 30, "the first collector holding its target")
        env = {**os.environ, "QUEUEWATCH_LIBRARIES": "rq"}
        second = subprocess.run([sys.executable, "-m", "queuewatch.cli", "collect", "--db", db_url, "--redis",
                                 redis_url, "--interval", str(INTERVAL_S)], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "a SQLite database takes one collector" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first one goes on
        read_at = lease_rows(engine)[0]["read_at_s"]
        _wait_for(lambda: lease_rows(engine)[0]["read_at_s"] > read_at, 10, "the first collector's next cycle")
        engine.dispose()
    finally:
        first.terminate()
        first.wait(timeout=30)


def test_one_collector_at_a_time_sends_a_channels_notifications(pg_engine):
    from collector.notifier import ChannelNotifier
    from config.notify import legacy_webhook
    from storage.leases import one_at_a_time
    from tests.storage.test_writer import _cycle

    sent = []
    channel = legacy_webhook("http://127.0.0.1:9/never", None)
    notifier = ChannelNotifier(pg_engine, channel, sender=lambda _channel, note, _now_s: sent.append(note))
    _cycle(pg_engine, time.time(), q=500)  # a depth alert opens: one notification to send
    with one_at_a_time(pg_engine, f"notify:{channel.name}") as first:  # another collector's notifier is busy
        assert first
        with one_at_a_time(pg_engine, f"notify:{channel.name}") as second:
            assert not second
        assert notifier.step() == 0 and sent == []  # it waits its turn: nothing sent
        with one_at_a_time(pg_engine, "notify:another-channel") as other:
            assert other  # channels do not wait for each other
    assert notifier.step() == 1 and len(sent) == 1
    assert notifier.step() == 0 and len(sent) == 1
