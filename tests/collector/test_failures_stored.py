"""Failed jobs end to end: real RQ and BullMQ workers fail a job, the collector stores it in job_failures."""
from __future__ import annotations

import time

import redis
from rq import Queue

from collector.bullmq_reader import BullMQReader
from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage import failures
from storage.engine import make_engine
from tests.collector import bullmq_helpers, rq_jobs
from tests.collector.test_rq_reader import run_burst_worker


def _collector(redis_url: str, db_url: str, reader, **settings) -> Collector:
    config = load_settings(env={}, redis_url=redis_url, db_url=db_url, **settings)
    return Collector(config, make_engine(db_url), reader)


def test_rq_failure_is_stored_with_its_exception_and_traceback(redis_url, redis_client, db_url):
    collector = _collector(redis_url, db_url, RQReader(redis.Redis.from_url(redis_url), settle_s=0))
    assert collector.run_cycle().ok  # baseline
    queue = Queue("flaky", connection=redis_client)
    failing = queue.enqueue(rq_jobs.fail, "known failure 42", job_timeout=30)
    queue.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "flaky")
    before = {key: redis_client.dump(key) for key in redis_client.keys("*")}
    assert collector.run_cycle().ok
    assert {key: redis_client.dump(key) for key in redis_client.keys("*")} == before  # nothing written to Redis

    now_s = time.time()
    stored = failures.recent_failures(collector.engine, "flaky", "rq", now_s - 600, now_s + 1)
    assert len(stored) == 1
    row = stored.iloc[0]
    assert row["job_id"] == failing.id
    assert row["exception_type"] == "ValueError" and row["message"] == "known failure 42"
    assert row["job_name"] == "tests.collector.rq_jobs.fail"
    assert row["worker"] and row["run_ms"] is not None and row["run_ms"] >= 0
    detail = failures.failure_traceback(collector.engine, int(row["id"]))
    assert detail["traceback"].startswith("Traceback") and "known failure 42" in detail["traceback"]
    counts = failures.failure_counts(collector.engine, "flaky", "rq", now_s - 600, now_s + 1)
    assert counts.to_dict("records")[0]["exception_type"] == "ValueError"
    assert counts.to_dict("records")[0]["count"] == 1

    assert collector.run_cycle().ok  # a later cycle does not store the same failure again
    assert len(failures.recent_failures(collector.engine, "flaky", "rq", now_s - 600, now_s + 1)) == 1


def test_failures_kept_per_queue_are_bounded(redis_url, redis_client, db_url):
    collector = _collector(redis_url, db_url, RQReader(redis.Redis.from_url(redis_url), settle_s=0),
                           failures_kept=3)
    assert collector.run_cycle().ok
    queue = Queue("flaky", connection=redis_client)
    ids = [queue.enqueue(rq_jobs.fail, f"failure {n}").id for n in range(5)]
    run_burst_worker(redis_url, "flaky")
    assert collector.run_cycle().ok
    now_s = time.time()
    stored = failures.recent_failures(collector.engine, "flaky", "rq", now_s - 600, now_s + 1)
    assert len(stored) == 3
    assert set(stored["job_id"]) <= set(ids)
    assert failures.failure_counts(collector.engine, "flaky", "rq", now_s - 600, now_s + 1)["count"].sum() == 3


def test_bullmq_failure_is_stored_with_failed_reason_and_stack(redis_url, db_url):
    collector = _collector(redis_url, db_url, BullMQReader(redis.Redis.from_url(redis_url)))
    assert collector.run_cycle().ok
    [job_id] = bullmq_helpers.add_jobs(redis_url, "mail", [({"fail": "known failure 42"}, {})])
    bullmq_helpers.run_worker(redis_url, "mail")
    bullmq_helpers.wait_until(lambda: collector.run_cycle().ok and not failures.recent_failures(
        collector.engine, "mail", "bullmq", 0, time.time() + 1).empty)
    row = failures.recent_failures(collector.engine, "mail", "bullmq", 0, time.time() + 1).iloc[0]
    assert row["job_id"] == job_id and row["message"] == "known failure 42"
    assert row["exception_type"] == "ValueError" and row["job_name"] == "job"
    traceback = failures.failure_traceback(collector.engine, int(row["id"]))["traceback"]
    assert "known failure 42" in traceback
