"""Job lookup by id against real RQ, BullMQ and Celery workers on a real Redis; nothing in Redis changes."""
from __future__ import annotations

import json
import time

import pytest
import redis
from rq import Queue

from collector.job_lookup import (
    LookupTarget, lookup_bullmq, lookup_celery, lookup_everywhere, lookup_rq, usable_job_id,
)
from collector.loop import Collector
from config.settings import load_settings
from storage import failures
from storage.engine import make_engine
from tests.collector import bullmq_helpers, rq_jobs
from tests.collector.celery_app import make_app
from tests.collector.celery_helpers import open_reader, start_worker, wait_for  # noqa: F401
from tests.collector.test_rq_reader import run_burst_worker

MESSAGE = "known failure 42"


def _keys(client: redis.Redis) -> dict:
    return {key: client.dump(key) for key in client.keys("*")}


def test_rq_jobs_are_found_with_state_timings_and_error(redis_url, redis_client):
    queue = Queue("billing", connection=redis_client)
    done = queue.enqueue(rq_jobs.sleep_for, 0.2)
    failed = queue.enqueue(rq_jobs.fail, MESSAGE)
    waiting_queue = Queue("later", connection=redis_client)
    run_burst_worker(redis_url, "billing")
    waiting = waiting_queue.enqueue(rq_jobs.noop)
    before = _keys(redis_client)

    found = lookup_rq(redis_client, done.id)
    assert (found.library, found.queue, found.state, found.name) == ("rq", "billing", "finished",
                                                                     "tests.collector.rq_jobs.sleep_for")
    assert found.run_s == pytest.approx(0.2, abs=0.15) and found.wait_s is not None and found.wait_s >= 0
    assert found.result.startswith("a pickled value of") and "not decoded" in found.result
    assert found.worker and found.error is None
    bad = lookup_rq(redis_client, failed.id)
    assert bad.state == "failed" and bad.error.rstrip().endswith(f"ValueError: {MESSAGE}")
    queued = lookup_rq(redis_client, waiting.id)
    assert queued.state == "queued" and queued.started_at_s is None and queued.wait_s is None
    assert lookup_rq(redis_client, "no-such-job") is None
    assert _keys(redis_client) == before


def test_bullmq_jobs_are_found_in_their_queue(redis_url, redis_client):
    done_id, failed_id = bullmq_helpers.add_jobs(redis_url, "mail", [({"sleep_s": 0.1}, {}), ({"fail": MESSAGE}, {})])
    bullmq_helpers.run_worker(redis_url, "mail")
    before = _keys(redis_client)
    [done] = lookup_bullmq(redis_client, done_id)
    assert (done.queue, done.state, done.name) == ("mail", "completed", "job")
    assert json.loads(done.result) == {"slept_s": 0.1} and done.run_s == pytest.approx(0.1, abs=0.1)
    [bad] = lookup_bullmq(redis_client, failed_id)
    assert bad.state == "failed" and bad.reason == MESSAGE and MESSAGE in bad.error
    assert lookup_bullmq(redis_client, "nope") == []
    assert _keys(redis_client) == before


def test_celery_failure_is_looked_up_and_stored_from_its_event(redis_url, redis_client, start_worker, open_reader,
                                                               tmp_path):
    db_url = f"sqlite:///{tmp_path / 'queuewatch.db'}"
    reader = open_reader(redis.Redis.from_url(redis_url), heartbeat_slack_s=1.0)
    reader.start()
    assert reader.listener.wait_subscribed(5)
    collector = Collector(load_settings(env={}, redis_url=redis_url, db_url=db_url), make_engine(db_url), reader)
    start_worker("billing", backend=True)
    app = make_app(redis_url, backend_url=redis_url)
    failed_id = app.tasks["qw.fail"].apply_async((MESSAGE,), queue="billing").id
    done_id = app.tasks["qw.sleep_for"].apply_async((0.05,), queue="billing").id
    wait_for(lambda: app.AsyncResult(failed_id).ready() and app.AsyncResult(done_id).ready(), 60, "both tasks")

    bad = lookup_celery(redis_client, failed_id)
    assert bad.state == "failure" and bad.queue == "billing" and bad.name == "qw.fail"
    assert bad.reason == f"ValueError: {MESSAGE}" and MESSAGE in bad.error
    good = lookup_celery(redis_client, done_id)
    assert good.state == "success" and good.result == "0.05" and good.ended_at_s is not None
    assert lookup_celery(redis_client, "no-such-task") is None

    def stored():
        collector.run_cycle()
        return not failures.recent_failures(collector.engine, "billing", "celery", 0, time.time() + 60).empty
    wait_for(stored, 30, "the task-failed event stored as a failure")
    row = failures.recent_failures(collector.engine, "billing", "celery", 0, time.time() + 60).iloc[0]
    assert (row["job_id"], row["exception_type"], row["message"], row["job_name"]) == (
        failed_id, "ValueError", MESSAGE, "qw.fail")
    assert MESSAGE in failures.failure_traceback(collector.engine, int(row["id"]))["traceback"]


def test_lookup_everywhere_reports_unreadable_redis_and_bad_ids(redis_url, redis_client):
    job = Queue("billing", connection=redis_client).enqueue(rq_jobs.noop)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    targets = [LookupTarget(dead, "redis://127.0.0.1:1/0", ("rq",)),
               LookupTarget(redis_client, "redis://here/0", ("rq", "bullmq", "celery"))]
    found, errors = lookup_everywhere(targets, job.id)
    assert [(f.library, f.source) for f in found] == [("rq", "redis://here/0")]
    assert len(errors) == 1 and errors[0].startswith("redis://127.0.0.1:1/0: ConnectionError")
    assert lookup_everywhere(targets[1:], "missing") == ([], [])
    assert usable_job_id("  abc ") == "abc" and usable_job_id("") is None and usable_job_id("a*") is None
    assert usable_job_id("x" * 256) is None
