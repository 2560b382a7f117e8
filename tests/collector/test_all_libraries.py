"""RQ, BullMQ and Celery side by side on one Redis, read by the collector the CLI builds."""
from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from sqlalchemy import func, select

from collector.loop import Collector
from collector.readers import build_readers, close_readers
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import queue_snapshots
from tests.collector import rq_jobs
from tests.collector.bullmq_helpers import add_jobs, on_queue, run_worker
from tests.collector.celery_app import make_app
from tests.collector.test_celery_reader_workers import start_worker  # noqa: F401 - fixture
from tests.collector.test_rq_reader import run_burst_worker


def _deltas(engine) -> dict[tuple[str, str], tuple[int, int, int]]:
    t = queue_snapshots
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.library, t.c.queue_name, func.sum(t.c.finished_delta),
                                   func.sum(t.c.failed_delta), func.sum(t.c.timeout_delta))
                            .group_by(t.c.library, t.c.queue_name)).all()
    return {(library, name): (int(f), int(x), int(o)) for library, name, f, x, o in rows}


def test_one_collector_reads_all_three_libraries(redis_url, redis_client, db_url, start_worker):  # noqa: F811
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url)
    readers = build_readers(settings)
    assert [r.library for r in readers] == ["rq", "bullmq", "celery"]
    collector = Collector(settings, make_engine(db_url), readers,
                          agents_client=redis.Redis.from_url(redis_url))
    try:
        assert collector.run_cycle().ok  # baseline; starts the Celery event listener
        celery = next(r for r in readers if r.library == "celery")
        assert celery.listener.wait_subscribed(5)
        start_worker("billing")
        app = make_app(redis_url)

        rq_queue = Queue("emails", connection=redis_client)
        for seconds in (0.05, 0.1, 0.15):
            rq_queue.enqueue(rq_jobs.sleep_for, seconds)
        rq_queue.enqueue(rq_jobs.fail)
        run_burst_worker(redis_url, "emails")
        add_jobs(redis_url, "thumbnails", [({"sleep_s": 0.05}, {}), ({"sleep_s": 0.08}, {}), ({"fail": "bad"}, {})])
        run_worker(redis_url, "thumbnails", metrics={"maxDataPoints": 60})
        counts = on_queue(redis_url, "thumbnails", "getJobCounts")
        for seconds in (0.05, 0.1):
            app.tasks["qw.sleep_for"].apply_async((seconds,), queue="billing")
        app.tasks["qw.fail"].apply_async(queue="billing")

        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            time.sleep(2.5)  # past the RQ reader's same-second hold-back
            assert collector.run_cycle().ok
            if _deltas(collector.engine).get(("celery", "billing"), (0, 0, 0))[:2] == (2, 1):
                break
        deltas = _deltas(collector.engine)
    finally:
        close_readers(readers)
    assert deltas[("rq", "emails")] == (3, 1, 0)
    assert deltas[("bullmq", "thumbnails")][:2] == (counts["completed"], counts["failed"]) == (2, 1)
    assert deltas[("celery", "billing")][:2] == (2, 1)
    with collector.engine.connect() as conn:
        libraries = {r for (r,) in conn.execute(select(queue_snapshots.c.library).distinct())}
    assert libraries == {"rq", "bullmq", "celery"}


@pytest.mark.parametrize("libraries", ["rq", "rq,bullmq", "celery"])
def test_only_the_configured_libraries_are_read(libraries, redis_url, db_url):
    readers = build_readers(load_settings(env={}, redis_url=f"{redis_url},{redis_url}", db_url=db_url,
                                          libraries=libraries))
    try:
        assert [r.library for r in readers] == libraries.split(",") * 2  # every library on every Redis
    finally:
        close_readers(readers)
