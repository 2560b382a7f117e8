"""The collector end to end: real redis-server, real RQ workers, real SQLite file."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from sqlalchemy import select

from core.backoff import backoff_s
from collector.loop import Collector
from collector.rq_reader import RQReader
from queuewatch.cli import main as cli_main
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import alerts, cycles, queue_snapshots
from storage.status import collector_status
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import run_burst_worker
from tests.conftest import free_port, start_redis_server
from tests.percentiles import nearest_rank

DURATIONS_S = [0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6]


def _collector(redis_url: str, db_url: str, **settings) -> Collector:
    config = load_settings(env={}, redis_url=redis_url, db_url=db_url, **settings)
    reader = RQReader(redis.Redis.from_url(redis_url), settle_s=0)
    return Collector(config, make_engine(db_url), reader)


def _snapshots(engine, queue_name: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(queue_snapshots).where(queue_snapshots.c.queue_name == queue_name)
                                              .order_by(queue_snapshots.c.sampled_at_s)).mappings()]


def test_numbers_equal_rq_and_percentiles_are_right(redis_url, redis_client, db_url):
    collector = _collector(redis_url, db_url)
    assert collector.run_cycle().ok  # baseline
    work, flaky = Queue("work", connection=redis_client), Queue("flaky", connection=redis_client)
    for seconds in DURATIONS_S * 3:
        work.enqueue(rq_jobs.sleep_for, seconds)
    for _ in range(4):
        flaky.enqueue(rq_jobs.fail)
    flaky.enqueue(rq_jobs.sleep_for, 3, job_timeout=1)
    flaky.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "work", "flaky")
    for _ in range(3):
        work.enqueue(rq_jobs.noop)  # left waiting

    result = collector.run_cycle()
    assert result.ok and result.round_trips <= 3

    rows = {name: _snapshots(collector.engine, name)[-1] for name in ("work", "flaky")}
    for name, queue in (("work", work), ("flaky", flaky)):
        row = rows[name]
        assert row["waiting"] == queue.count
        assert row["active"] == StartedJobRegistry(queue=queue).get_job_count(cleanup=False)
        assert row["failed"] == FailedJobRegistry(queue=queue).get_job_count(cleanup=False)
        assert row["completed"] == FinishedJobRegistry(queue=queue).get_job_count(cleanup=False)
    assert rows["work"]["finished_delta"] == 30 and rows["work"]["failed_delta"] == 0
    assert rows["flaky"]["failed_delta"] == 5 and rows["flaky"]["timeout_delta"] == 1
    assert rows["flaky"]["finished_delta"] == 1
    assert rows["flaky"]["error_rate_pct"] == pytest.approx(5 / 6 * 100, rel=1e-3)
    assert rows["flaky"]["timeout_rate_pct"] == pytest.approx(1 / 6 * 100, rel=1e-3)
    assert rows["work"]["jobs_per_minute"] > 0

    finished = FinishedJobRegistry(queue=work).get_job_ids(cleanup=False)
    jobs = Job.fetch_many(finished, connection=redis_client)
    actual_ms = np.array([(j.ended_at - j.started_at).total_seconds() * 1000 for j in jobs])
    for q, column in ((0.5, "p50_processing_ms"), (0.95, "p95_processing_ms"), (0.99, "p99_processing_ms")):
        assert rows["work"][column] == pytest.approx(nearest_rank(actual_ms, q), rel=0.01)
    waits_ms = np.array([(j.started_at - j.enqueued_at).total_seconds() * 1000 for j in jobs])
    assert rows["work"]["p95_wait_ms"] == pytest.approx(nearest_rank(waits_ms, 0.95), rel=0.01)
    assert rows["work"]["oldest_waiting_ms"] > 0
    assert len(json.loads(rows["work"]["recent_processing_ms"])) == 30


def test_a_restarted_collector_does_not_count_twice(redis_url, redis_client, db_url):
    first = _collector(redis_url, db_url)
    first.run_cycle()
    queue = Queue("work", connection=redis_client)
    for _ in range(5):
        queue.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "work")
    first.run_cycle()
    second = _collector(redis_url, db_url)  # same database: resumes from the stored cursors
    second.run_cycle()
    deltas = [r["finished_delta"] for r in _snapshots(second.engine, "work")]
    assert sum(deltas) == 5 and deltas[-1] == 0


def test_depth_alert_opens_and_resolves(redis_url, redis_client, db_url):
    collector = _collector(redis_url, db_url)
    queue = Queue("bulk", connection=redis_client)
    for _ in range(215):
        queue.enqueue(rq_jobs.noop)
    collector.run_cycle()
    with collector.engine.connect() as conn:
        alert = conn.execute(select(alerts)).mappings().one()
    assert alert["alert_type"] == "queue_depth" and alert["value"] == 215 and alert["resolved_at_s"] is None
    assert json.loads(_snapshots(collector.engine, "bulk")[-1]["issues"]) == \
        ["Queue depth above warning threshold (215 > 200)", "No live worker for 215 waiting jobs"]
    run_burst_worker(redis_url, "bulk")
    collector.run_cycle()
    with collector.engine.connect() as conn:
        assert conn.execute(select(alerts.c.resolved_at_s)).scalar_one() is not None


def test_redis_outage_is_recorded_backs_off_and_resumes(tmp_path, db_url):
    port = free_port()
    proc, url = start_redis_server(tmp_path, port)
    collector = _collector(url, db_url, interval_s=1.0, backoff_cap_s=4.0)
    Queue("work", connection=redis.Redis.from_url(url)).enqueue(rq_jobs.noop)
    assert collector.run_cycle().ok
    proc.terminate()
    proc.wait(timeout=10)
    result = collector.run_cycle()
    assert not result.ok and "Redis unreachable" in result.error
    assert collector_status(collector.engine)["redis_down"]
    assert [backoff_s(1.0, n, 4.0) for n in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    proc, url = start_redis_server(tmp_path, port)
    try:
        stop = threading.Event()
        thread = threading.Thread(target=collector.run, args=(stop,))
        thread.start()
        deadline = __import__("time").monotonic() + 15
        while collector_status(collector.engine)["redis_down"] and __import__("time").monotonic() < deadline:
            stop.wait(0.2)
        stop.set()
        thread.join(10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    status = collector_status(collector.engine)
    assert not status["redis_down"] and status["latest"]["ok"]
    with collector.engine.connect() as conn:
        assert [r.ok for r in conn.execute(select(cycles.c.ok).order_by(cycles.c.id))][:2] == [True, False]


def test_cli_collect_once(redis_url, db_url, capsys):
    assert cli_main(["collect", "--once", "--redis", redis_url, "--db", db_url]) == 0
    assert cli_main(["collect", "--once", "--redis", f"redis://127.0.0.1:{free_port()}/0", "--db", db_url]) == 1
    assert collector_status(make_engine(db_url))["redis_down"]
    assert cli_main(["collect", "--once", "--redis", "not-a-url", "--db", db_url]) == 2
    assert "bad Redis URL" in capsys.readouterr().err
    assert cli_main(["collect", "--once", "--redis", redis_url, "--db", "nonsense"]) == 1
    assert "not a database URL" in capsys.readouterr().err


def test_retention_runs_from_the_loop_at_most_every_ten_minutes(redis_url, db_url):
    from tests.storage.test_writer import _cycle

    collector = _collector(redis_url, db_url, retention_days=1.0)
    now_s = __import__("time").time()
    _cycle(collector.engine, now_s - 2 * 86400, old=1)
    _cycle(collector.engine, now_s - 3600, recent=1)
    removed = collector.purge_if_due()
    assert removed["queue_snapshots"] == 1 and removed["cycles"] == 1
    assert collector.purge_if_due() is None  # not due again yet
    assert [r["queue_name"] for r in _snapshots(collector.engine, "recent")] == ["recent"]
