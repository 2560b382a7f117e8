"""No value in Redis stops collection: poisoned keys next to real RQ, BullMQ and Celery workers.

A running collector (Collector.run in a thread, every reader the CLI builds, agent reports on) reads a real
redis-server while tests/collector/poisons.py writes malformed values into it and real workers run real jobs.
It must keep storing cycles; the clean queues' figures must equal each library's own counts; a poisoned
figure must be unavailable, never a made-up number, and each bad key is logged once.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from sqlalchemy import func, select

from collector.loop import Collector
from core.problems import ProblemLog
from collector.readers import build_readers, close_readers
from queuewatch.cli import main as cli_main
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import cycles, queue_snapshots, worker_snapshots
from tests.collector import poisons, rq_jobs
from tests.collector.bullmq_helpers import add_jobs, on_queue, run_worker
from tests.collector.celery_app import make_app
from tests.collector.celery_helpers import start_worker  # noqa: F401 - fixture
from tests.collector.test_rq_reader import run_burst_worker

LIBRARIES = "rq,bullmq,celery"


def _ok_cycles(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(cycles).where(cycles.c.ok.is_(True))).scalar_one()


def _latest(engine, library: str, queue_name: str) -> dict:
    t = queue_snapshots
    with engine.connect() as conn:
        return dict(conn.execute(select(t).where(t.c.library == library, t.c.queue_name == queue_name)
                                 .order_by(t.c.sampled_at_s.desc()).limit(1)).mappings().one())


def _sums(engine, library: str, queue_name: str) -> tuple[int, int]:
    t = queue_snapshots
    with engine.connect() as conn:
        finished, failed = conn.execute(select(func.sum(t.c.finished_delta), func.sum(t.c.failed_delta))
                                        .where(t.c.library == library, t.c.queue_name == queue_name)).one()
    return int(finished or 0), int(failed or 0)


def _has_queue(engine, library: str, queue_name: str) -> bool:
    t = queue_snapshots
    with engine.connect() as conn:
        return conn.execute(select(t.c.sampled_at_s).where(t.c.library == library, t.c.queue_name == queue_name)
                            .limit(1)).first() is not None


def _latest_workers(engine) -> dict[str, dict]:
    t = worker_snapshots
    with engine.connect() as conn:
        last = conn.execute(select(func.max(t.c.cycle_id))).scalar_one()
        return {r["worker_name"]: dict(r) for r in conn.execute(select(t).where(t.c.cycle_id == last)).mappings()}


def _unavailable(row: dict) -> set[str]:
    return set(filter(None, (row["unavailable"] or "").split(",")))


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_poisoned_values_never_stop_the_running_collector(redis_url, redis_client, db_url, start_worker,  # noqa: F811
                                                          caplog):
    caplog.set_level(logging.WARNING, logger="core.problems")
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, libraries=LIBRARIES, interval_s=0.5)
    readers = build_readers(settings)
    engine = make_engine(db_url)
    collector = Collector(settings, engine, readers, agents_client=redis.Redis.from_url(redis_url),
                          problems=ProblemLog(every_s=3600.0))
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    celery = next(r for r in readers if r.library == "celery")
    try:
        thread.start()
        _wait(lambda: celery.listener is not None and celery.listener.wait_subscribed(0.1), 10, "subscription")
        redis_client.sadd("_kombu.binding.celery", f"{poisons.CELERY_QUEUE}{poisons.SEP}{poisons.SEP}"
                                                   f"{poisons.CELERY_QUEUE}")
        start_worker("billing", pool="prefork", concurrency=2)
        app = make_app(redis_url)
        emails = Queue("emails", connection=redis_client)
        poisoned_rq = Queue(poisons.RQ_QUEUE, connection=redis_client)
        for _ in range(3):
            poisoned_rq.enqueue(rq_jobs.noop)  # waiting, never run: the poisoned queue's exact figure
        add_jobs(redis_url, poisons.BULL_QUEUE, [({}, {}), ({}, {})])

        def real_work(round_: int) -> None:
            for seconds in (0.02, 0.05):
                emails.enqueue(rq_jobs.sleep_for, seconds)
            emails.enqueue(rq_jobs.fail)
            run_burst_worker(redis_url, "emails")
            add_jobs(redis_url, "thumbnails", [({"sleep_s": 0.02}, {}), ({"fail": "bad"}, {})])
            run_worker(redis_url, "thumbnails", metrics={"maxDataPoints": 60})
            app.tasks["qw.sleep_for"].apply_async((0.02,), queue="billing")
            app.tasks["qw.fail"].apply_async(queue="billing")

        real_work(1)
        _wait(lambda: _ok_cycles(engine) >= 3 and all(_has_queue(engine, library, name) for library, name in (
            ("rq", poisons.RQ_QUEUE), ("bullmq", poisons.BULL_QUEUE), ("celery", poisons.CELERY_QUEUE),
            ("celery", "billing"))), 30, "every queue read before the poisons")
        before = _ok_cycles(engine)
        for _, poison in poisons.POISONS:
            poison(redis_client)
            time.sleep(0.1)
        real_work(2)
        for name, poison in poisons.POISONS:  # events again (pub/sub keeps none), agent reports rewritten
            if name.startswith(("celery", "agent")):
                poison(redis_client)
        injected_at = _ok_cycles(engine)
        _wait(lambda: _sums(engine, "celery", "billing") == (2, 2) and _ok_cycles(engine) >= injected_at + 8,
              60, "the clean queues' jobs counted with the poisons in place")
        time.sleep(3.0)  # past the RQ reader's same-second hold-back
        _wait(lambda: _sums(engine, "rq", "emails") == (4, 2), 20, "RQ's jobs counted")
        assert thread.is_alive()
        stored = _ok_cycles(engine) - before
    finally:
        stop.set()
        thread.join(20)
        close_readers(readers)
    with engine.connect() as conn:
        errors = conn.execute(select(func.count()).select_from(cycles).where(cycles.c.ok.is_(False))).scalar_one()
    print(f"\n{len(poisons.POISONS)} poisoned values injected, {stored} cycles stored meanwhile")
    assert errors == 0 and stored >= 8

    # the clean queues equal each library's own counts
    row = _latest(engine, "rq", "emails")
    assert (row["waiting"], row["active"]) == (emails.count, StartedJobRegistry(queue=emails).get_job_count(
        cleanup=False))
    assert row["failed"] == FailedJobRegistry(queue=emails).get_job_count(cleanup=False) == 2
    assert row["completed"] == FinishedJobRegistry(queue=emails).get_job_count(cleanup=False) == 4
    assert _unavailable(row) <= {"memoryUsageMB", "memoryPercentage"}
    counts = on_queue(redis_url, "thumbnails", "getJobCounts")
    row = _latest(engine, "bullmq", "thumbnails")
    assert (row["waiting"], row["active"], row["completed"], row["failed"]) == (
        counts["waiting"], counts["active"], counts["completed"], counts["failed"]) == (0, 0, 2, 2)
    assert _sums(engine, "bullmq", "thumbnails") == (2, 2)
    assert _unavailable(_latest(engine, "celery", "billing")) <= {"failed", "completed", "memoryUsageMB",
                                                                  "memoryPercentage"}

    # the poisoned queues: what was not touched stays exact, what was is unavailable
    row = _latest(engine, "rq", poisons.RQ_QUEUE)
    assert row["waiting"] == poisoned_rq.count == 3 and row["oldest_waiting_ms"] > 0
    assert {"active", "completed", "jobsPerMinute", "errorRate"} <= _unavailable(row)
    row = _latest(engine, "bullmq", poisons.BULL_QUEUE)
    # bullmq's own getJobCounts fails on this queue (WRONGTYPE in its script): its wait list is the count
    assert row["waiting"] == redis_client.llen(f"bull:{poisons.BULL_QUEUE}:wait") == 2
    assert "active" in _unavailable(row) and "oldestWaitingMs" in _unavailable(row)
    row = _latest(engine, "celery", poisons.CELERY_QUEUE)
    assert {"waiting", "oldestWaitingMs"} <= _unavailable(row)
    with engine.connect() as conn:
        names = {n for (n,) in conn.execute(select(queue_snapshots.c.queue_name).distinct())}
        lengths = (conn.execute(select(func.max(func.length(queue_snapshots.c.queue_name)))).scalar_one(),
                   *conn.execute(select(func.max(func.length(worker_snapshots.c.worker_name)),
                                        func.max(func.length(worker_snapshots.c.hostname)))).one())
    assert not any("\x00" in n or "\ufffd" in n for n in names) and max(n or 0 for n in lengths) <= 255

    # made-up workers: malformed figures unavailable, unusable ones skipped, real ones listed
    workers = _latest_workers(engine)
    assert workers["big-pid"]["pid"] is None and workers["bad-times"]["birth_at_s"] is None
    assert workers["long-fields"]["hostname"] is None
    assert not {"big-count", "float-count", "negative-count"} & set(workers)
    assert workers["huge-rss"]["rss_mb"] is None and workers["huge-rss"]["alive"]
    assert not {"many-jobs", "big-pid-agent", "inf-rss", "deep-agent"} & set(workers)
    assert any(w["library"] == "celery" and w["alive"] and w["worker_name"].startswith("w0-")
               for w in workers.values())

    # each bad key logged once, though many cycles read it
    logged = [r.getMessage() for r in caplog.records if r.name == "core.problems"]
    for key in (f"rq:wip:{poisons.RQ_QUEUE}", "rq:worker:big-pid", "queuewatch:agent:rq:huge-rss",
                f"bull:{poisons.BULL_QUEUE}:active"):
        assert sum(1 for m in logged if m.startswith(f"malformed value in Redis at {key}:")) == 1, key

    # a restarted collector and `queuewatch collect --once` both store a cycle over the same poisons
    restarted = build_readers(settings)
    try:
        assert Collector(settings, engine, restarted, agents_client=redis_client).run_cycle().ok
    finally:
        close_readers(restarted)
    assert cli_main(["collect", "--once", "--redis", redis_url, "--db", db_url]) == 0


@pytest.mark.parametrize("value", [10 ** 30, 2 ** 70, -(2 ** 70), float("nan"), float("inf"), "x\x00y" * 200])
def test_the_writer_bounds_what_no_reader_should_have_let_through(value, engine):
    from storage.writer import CycleRecord, write_cycle

    now_s = time.time()
    row = {"sampled_at_s": now_s, "worker_name": "w", "library": "rq", "queues": "", "pid": value,
           "hostname": value if isinstance(value, str) else "h", "state": "idle", "alive": True,
           "jobs_processed": value if not isinstance(value, str) else 1, "successful_jobs": 1, "failed_jobs": 0,
           "rss_mb": value if isinstance(value, float) else 1.0, "should_recycle": False}
    write_cycle(engine, CycleRecord(now_s, now_s, 1, [], [row]), lambda open_rows: [])
    with engine.connect() as conn:
        stored = conn.execute(select(worker_snapshots)).mappings().one()
    assert stored["pid"] is None or -(2 ** 63) <= stored["pid"] < 2 ** 63
    assert -(2 ** 63) <= stored["jobs_processed"] < 2 ** 63
    assert stored["rss_mb"] is None or stored["rss_mb"] == 1.0
    assert "\x00" not in stored["hostname"] and len(stored["hostname"]) <= 255
