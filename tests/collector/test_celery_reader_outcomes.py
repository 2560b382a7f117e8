"""Ended Celery tasks counted against Celery's own results: real prefork workers with -E on the real Redis."""
from __future__ import annotations

import logging
import os
import signal
import time

import pytest
import redis
from billiard.exceptions import TimeLimitExceeded, WorkerLostError

from core.derive import PERCENTILES, interval_sketches
from core.model import Cursor, QueueReading
from core.sketch import Sketch
from tests.collector.celery_app import make_app
from tests.collector.celery_helpers import Totals, open_reader, start_worker, wait_for  # noqa: F401

QUEUES = ("pdf-render", "billing")


def celerys_view(app, queue_by_task: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per queue, what the result backend says ended: finished (SUCCESS), failed (FAILURE), timeouts."""
    view = {kind: {queue: 0 for queue in QUEUES} for kind in ("finished", "failed", "timeouts")}
    for task_id, queue in queue_by_task.items():
        result = app.AsyncResult(task_id)
        assert app.backend.get_task_meta(task_id)["queue"] == queue
        view["finished"][queue] += result.state == "SUCCESS"
        view["failed"][queue] += result.state == "FAILURE"
        view["timeouts"][queue] += isinstance(result.result, TimeLimitExceeded)
    return view


def test_timeouts_failures_and_a_killed_pool_child_count_as_celery_recorded_them(
        redis_url, redis_client, start_worker, open_reader, tmp_path):
    reader = open_reader(redis.Redis.from_url(redis_url), heartbeat_slack_s=1.0)
    reader.start()
    assert reader.listener.wait_subscribed(5)
    totals = Totals(reader)
    start_worker(*QUEUES, pool="prefork", concurrency=3, backend=True)
    wait_for(lambda: [w for w in totals.read().workers if w.alive], 30, "a live worker")
    app = make_app(redis_url, backend_url=redis_url)
    sleep = app.tasks["qw.sleep_for"]
    durations_s = {sleep.apply_async((d,), queue="pdf-render").id: d for d in (0.2, 0.4, 0.6)}
    timeout_id = sleep.apply_async((10,), queue="pdf-render", time_limit=1).id
    failed_id = app.tasks["qw.fail"].apply_async(queue="billing").id
    ok_ids = [app.tasks["qw.noop"].apply_async(queue="billing").id for _ in range(2)]
    pid_path = tmp_path / "child.pid"
    lost_id = app.tasks["qw.sleep_noting_pid"].apply_async((str(pid_path), 30), queue="billing").id
    queue_by_task = {**dict.fromkeys([*durations_s, timeout_id], "pdf-render"),
                     **dict.fromkeys([failed_id, *ok_ids, lost_id], "billing")}

    child_pid = int(wait_for(lambda: totals.read() and pid_path.exists() and pid_path.read_text(), 20,
                             "the pool child running the task to kill"))
    killed_at_s = time.time()
    os.kill(child_pid, signal.SIGKILL)
    wait_for(lambda: totals.read() and all(app.AsyncResult(t).ready() for t in queue_by_task), 30,
             "every task ended in the result backend")
    wait_for(lambda: totals.read() and totals.ended() >= len(queue_by_task), 10, "the collector to count them")
    totals.read()

    view = celerys_view(app, queue_by_task)
    assert isinstance(app.AsyncResult(lost_id).result, WorkerLostError)
    assert isinstance(app.AsyncResult(failed_id).result, ValueError)
    assert view == {"finished": {"pdf-render": 3, "billing": 2}, "failed": {"pdf-render": 1, "billing": 2},
                    "timeouts": {"pdf-render": 1, "billing": 0}}
    assert (totals.finished, totals.failed, totals.timeouts) == (view["finished"], view["failed"], view["timeouts"])
    assert totals.names == set(QUEUES) and totals.counted_since == {None} and reader.unattributed == 0

    jobs = {job.job_id: job for name in QUEUES for job in totals.jobs[name]}
    assert set(jobs) == set(queue_by_task)
    for task_id, duration_s in durations_s.items():
        assert duration_s * 1000 - 5 <= jobs[task_id].processing_ms <= duration_s * 1000 + 150
        assert jobs[task_id].wait_ms is not None
    assert jobs[timeout_id].timed_out and jobs[timeout_id].processing_ms == pytest.approx(1000, abs=300)
    lost = jobs[lost_id]
    assert lost.failed and not lost.timed_out and lost.ended_at_s >= killed_at_s - 0.05
    assert 0 <= lost.processing_ms <= (lost.ended_at_s - killed_at_s) * 1000 + 2000

    render = QueueReading("pdf-render", "celery", 0, 0, 0, 0, 0, 0, None, Cursor(),
                          sampled_jobs=totals.jobs["pdf-render"])
    processing, _ = interval_sketches(render)
    expected = Sketch().extend([200.0, 400.0, 600.0, 1000.0])
    for got_ms, want_ms in zip(processing.quantiles(PERCENTILES), expected.quantiles(PERCENTILES)):
        assert want_ms * 0.98 - 5 <= got_ms <= want_ms + 300


def test_without_task_sent_events_the_queue_comes_from_results_or_routes_and_is_never_invented(
        redis_url, redis_client, start_worker, open_reader, caplog):
    with_results = open_reader(redis.Redis.from_url(redis_url), result_client=redis_client)
    bare = open_reader(redis.Redis.from_url(redis_url))
    routed = open_reader(redis.Redis.from_url(redis_url), routes={"qw.fail": "billing", "qw.noop": "billing"})
    for reader in (with_results, bare, routed):
        reader.start()
        assert reader.listener.wait_subscribed(5)
    start_worker(*QUEUES, pool="prefork", concurrency=2, backend=True)
    wait_for(lambda: [w for w in with_results.read({}).workers if w.alive], 30, "a live worker")
    app = make_app(redis_url, backend_url=redis_url, send_sent_events=False)
    timeout_id = app.tasks["qw.sleep_for"].apply_async((10,), queue="pdf-render", time_limit=1).id
    failed_id = app.tasks["qw.fail"].apply_async(queue="billing").id
    ok_id = app.tasks["qw.noop"].apply_async(queue="billing").id
    queue_by_task = {timeout_id: "pdf-render", failed_id: "billing", ok_id: "billing"}
    wait_for(lambda: all(app.AsyncResult(t).ready() for t in queue_by_task), 30, "every task ended")
    time.sleep(0.5)  # the worker's batched task events follow its result writes
    view = celerys_view(app, queue_by_task)
    assert view["timeouts"] == {"pdf-render": 1, "billing": 0}

    totals = Totals(with_results)
    wait_for(lambda: totals.read() and totals.ended() >= 3, 10, "the counts from result metadata")
    assert (totals.finished, totals.failed, totals.timeouts) == (view["finished"], view["failed"], view["timeouts"])

    caplog.set_level(logging.WARNING, logger="collector.celery_reader")
    bare_totals = Totals(bare)
    bare_totals.read()
    assert bare_totals.ended() == 0 and bare.unattributed == 3 and bare_totals.names == set(QUEUES)
    [warning] = [r for r in caplog.records if "cannot be told" in r.getMessage()]
    assert warning.name == "collector.celery_reader"

    routed_totals = Totals(routed)
    routed_totals.read()
    assert routed_totals.finished == {"pdf-render": 0, "billing": 1} and routed.unattributed == 1
    assert routed_totals.failed == {"pdf-render": 0, "billing": 1} and sum(routed_totals.timeouts.values()) == 0
    assert "celery" not in totals.names | bare_totals.names | routed_totals.names
