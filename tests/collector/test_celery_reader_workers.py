"""The Celery reader with real Celery workers and their events: run times, liveness, discovery."""
from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from collector.celery_reader import ALWAYS_UNAVAILABLE, OLDEST_FIELD, TIMING_FIELDS
from tests.collector.celery_app import make_app
from tests.collector.celery_helpers import Totals, envelope, open_reader, start_worker, wait_for  # noqa: F401


def test_events_give_run_times_failures_timeouts_active_and_live_workers(redis_url, redis_client, start_worker,
                                                                         open_reader):
    reader = open_reader(redis.Redis.from_url(redis_url), result_client=redis_client, heartbeat_slack_s=1.0)
    reader.start()
    assert reader.listener.wait_subscribed(5)
    totals = Totals(reader)
    worker = start_worker("timing", "bulk", pool="prefork", concurrency=2, backend=True)
    wait_for(lambda: [w for w in totals.read().workers if w.alive], 30, "a live worker")
    app = make_app(redis_url, backend_url=redis_url)
    quiet = make_app(redis_url, backend_url=redis_url, send_sent_events=False)
    durations_s = {app.tasks["qw.sleep_for"].apply_async((d,), queue="timing").id: d for d in (0.2, 0.4, 0.6)}
    failed_id = app.tasks["qw.fail"].apply_async(queue="timing").id
    timeout_id = app.tasks["qw.sleep_for"].apply_async((5,), queue="timing", time_limit=1).id
    for _ in range(3):
        quiet.tasks["qw.noop"].apply_async(queue="bulk")

    wait_for(lambda: totals.read() and sum(totals.finished.values()) + sum(totals.failed.values()) >= 8, 30,
             "eight ended tasks")

    assert (totals.finished["timing"], totals.failed["timing"], totals.timeouts["timing"]) == (3, 2, 1)
    assert (totals.finished["bulk"], totals.failed["bulk"]) == (3, 0)  # queue from the extended result metadata
    jobs = {job.job_id: job for job in totals.jobs["timing"]}
    for task_id, duration_s in durations_s.items():
        assert not jobs[task_id].failed
        assert duration_s * 1000 - 5 <= jobs[task_id].processing_ms <= duration_s * 1000 + 150
        assert jobs[task_id].wait_ms is not None
    assert jobs[timeout_id].failed and jobs[timeout_id].timed_out
    assert jobs[timeout_id].processing_ms == pytest.approx(1000, abs=300)
    assert jobs[failed_id].failed and not jobs[failed_id].timed_out
    assert totals.last.unavailable == ALWAYS_UNAVAILABLE

    running_id = app.tasks["qw.sleep_for"].apply_async((20,), queue="timing").id
    wait_for(lambda: totals.read() and totals.queue("timing").active == 1, 10, "one active task")
    [seen] = wait_for(lambda: [w for w in totals.read().workers
                               if w.current_job_id == running_id and w.state == "busy"], 10, "a busy heartbeat")
    assert (seen.alive, seen.pid, seen.hostname) == (True, worker.pid, os.uname().nodename)
    assert seen.queues == ["bulk", "timing"] and seen.failed_jobs == 2 and seen.jobs_processed == 8
    assert seen.last_heartbeat_at_s and seen.birth_at_s

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    [dead] = wait_for(lambda: [w for w in totals.read().workers if not w.alive], 2 * 2.0 + 1.0 + 5, "stale worker")
    assert (dead.name, dead.state, dead.current_job_id) == (seen.name, "stale", None)
    assert totals.queue("timing").active == 0
    assert (totals.finished["timing"], totals.failed["timing"], totals.timeouts["timing"]) == (3, 3, 1)
    lost = next(job for job in totals.jobs["timing"] if job.job_id == running_id)
    assert lost.failed and not lost.timed_out and lost.processing_ms is None and lost.wait_ms is not None
    assert app.AsyncResult(running_id).state == "PENDING"  # Celery itself never learns the task ended
    reader.close()
    assert not reader.listener.running


def test_without_task_events_timing_is_unavailable(redis_url, redis_client, start_worker, open_reader):
    reader = open_reader(redis.Redis.from_url(redis_url), heartbeat_slack_s=1.0)
    reader.start()
    assert reader.listener.wait_subscribed(5)
    app = make_app(redis_url, send_sent_events=False)
    app.tasks["qw.noop"].apply_async(queue="unserved")  # bound before the first read's discovery
    start_worker("plain", events=False)
    [worker] = wait_for(lambda: reader.read({}).workers, 30, "heartbeats of a worker without -E")
    assert worker.alive
    for _ in range(2):
        app.tasks["qw.noop"].apply_async(queue="plain")
    wait_for(lambda: any(w.jobs_processed >= 2 for w in reader.read({}).workers), 15, "processed counter")
    app.tasks["qw.noop"].apply_async(queue="plain", countdown=60)
    running_id = app.tasks["qw.sleep_for"].apply_async((3,), queue="plain").id

    def reserved():
        reading = reader.read({})
        plain = {q.queue_name: q for q in reading.queues}["plain"]
        return reading if (plain.active, plain.scheduled) == (1, 1) else None

    reading = wait_for(reserved, 10, "a running and an ETA message in unacked")
    assert redis_client.hlen("unacked") == 2 and running_id
    assert TIMING_FIELDS | ALWAYS_UNAVAILABLE <= reading.unavailable
    queues = {q.queue_name: q for q in reading.queues}
    assert OLDEST_FIELD in queues["unserved"].unavailable
    assert queues["unserved"].waiting == 1 and queues["unserved"].oldest_enqueued_at_s is None
    assert all(q.new_finished == q.new_failed == 0 and not q.sampled_jobs for q in reading.queues)
    [worker] = reading.workers
    assert worker.alive and worker.jobs_processed >= 2 and worker.failed_jobs == 0


def test_a_new_worker_triggers_discovery_of_new_tables(redis_url, redis_client, open_reader):
    app = make_app(redis_url, send_sent_events=False)
    app.tasks["qw.noop"].apply_async(queue="early")
    reader = open_reader(redis_client, discover_every=0)
    reader.start()
    assert reader.listener.wait_subscribed(5)
    first = reader.read({})
    app.tasks["qw.noop"].apply_async(queue="late")  # a new binding table: found by the next discovery only
    second = reader.read({})
    assert [q.queue_name for q in second.queues] == ["early"] and (first.round_trips, second.round_trips) == (3, 2)
    heartbeat = {"type": "worker-heartbeat", "hostname": "new@h", "pid": 1, "freq": 2.0, "timestamp": time.time()}
    redis_client.publish("/0.celeryev/worker.heartbeat", envelope(heartbeat))
    wait_for(lambda: reader.state.workers(time.time()), 5, "the heartbeat")
    assert reader.read({}).round_trips == 2
    third = reader.read({})
    assert [q.queue_name for q in third.queues] == ["early", "late"] and third.round_trips == 3
