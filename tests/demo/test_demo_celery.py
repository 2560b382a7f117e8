"""The demo's Celery part for real but briefly (prefork worker with -E, producer); the producer alone."""
from __future__ import annotations

import time
from collections import Counter

import psutil
import redis

from collector.celery_layout import PUBLISHED_AT_HEADER, CeleryLayout
from collector.celery_reader import CeleryReader
from queuewatch.demo.celery_app import CELERY_QUEUES, PDF_QUEUE, PDF_TIME_LIMIT_S, RENDER_TASK
from queuewatch.demo.celery_workload import (
    CELERY_CONCURRENCY,
    CELERY_PROFILES,
    PRIORITY_WEIGHTS,
    CeleryConfig,
    CeleryWorkload,
    worker_argv,
)
from queuewatch.demo.embedded_redis import EmbeddedRedis
from queuewatch.demo.processes import CELERY_WORKER_ROLE, DemoProcesses
from tests.demo.helpers import alive, running

RUN_S = 18.0


def test_celery_worker_and_producer_run_real_tasks_and_leave_nothing_behind(tmp_path):
    seen_pids: set[int] = set()
    finished: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    timeouts: Counter[str] = Counter()
    buckets: set[str] = set()
    reported: set[str] = set()
    stamped = False
    pool_size = 0
    layout = CeleryLayout()
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        with CeleryReader(client, queues=list(CELERY_QUEUES)) as reader:
            assert reader.listener.wait_subscribed(5)
            with DemoProcesses(tmp_path / "logs") as processes:
                worker, _ = processes.start_celery(server.url, CeleryConfig())
                deadline_s = time.monotonic() + RUN_S
                next_read_s = 0.0
                while time.monotonic() < deadline_s:
                    seen_pids |= processes.pids()
                    pool_size = max(pool_size, len(_descendants(processes, CELERY_WORKER_ROLE)))
                    for queue in CELERY_QUEUES:
                        for key in layout.bucket_keys(queue):
                            if client.llen(key):
                                buckets.add(key)
                                oldest = client.lindex(key, -1) or b""
                                stamped = stamped or PUBLISHED_AT_HEADER.encode() in oldest
                    if time.monotonic() >= next_read_s:
                        reading = reader.read({})
                        for queue in reading.queues:
                            reported.add(queue.queue_name)
                            finished[queue.queue_name] += queue.new_finished
                            failed[queue.queue_name] += queue.new_failed
                            timeouts[queue.queue_name] += queue.new_timeouts
                        next_read_s = time.monotonic() + 1.0
                    time.sleep(0.1)
                assert processes.dead() == [], [child.log_tail() for child in processes.dead()]
                workers = reader.read({}).workers
                names = [w.name for w in workers if w.alive]
                assert len(names) == 1 and names[0].startswith(f"demo-celery-{processes.run_id}@"), names
            assert worker.process.returncode == 0, worker.log_tail()
        client.close()

    for queue in CELERY_QUEUES:
        assert finished[queue] >= 5, finished
        assert failed[queue] >= 1, failed
    assert timeouts[PDF_QUEUE] >= 1, timeouts
    assert reported == set(CELERY_QUEUES), reported  # no queue is made up (the default `celery` one included)
    assert reader.unattributed == 0
    assert len(buckets) >= 2, buckets
    assert stamped, "no message carried the publish-time header"
    assert pool_size >= CELERY_CONCURRENCY
    assert [pid for pid in seen_pids if alive(pid)] == []


def _descendants(processes: DemoProcesses, name: str) -> list[psutil.Process]:
    """The running descendants of the named child."""
    child = next(child for child in processes.children if child.name == name)
    try:
        return [proc for proc in psutil.Process(child.process.pid).children(recursive=True) if running(proc)]
    except psutil.Error:
        return []


class _RecordingApp:
    """Stands in for the Celery app: records what the producer sends."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send_task(self, name: str, *, args: tuple, kwargs: dict, priority: int, queue: str) -> None:
        self.sent.append((name, args, kwargs, priority, queue))


def _produce(seed: int, until_s: float) -> list[tuple]:
    app = _RecordingApp()
    workload = CeleryWorkload(app, CeleryConfig(seed=seed), log=lambda line: None)  # type: ignore[arg-type]
    workload.kickoff()
    elapsed_s = 0.0
    while elapsed_s < until_s:
        elapsed_s += 0.25
        workload.step(elapsed_s)
    return app.sent


def test_celery_producer_is_seeded_and_mixes_priorities_failures_and_time_limits():
    assert _produce(3, 60) == _produce(3, 60)
    assert _produce(3, 60) != _produce(4, 60)
    sent = _produce(5, 300)
    assert {priority for *_, priority, _ in sent} == {priority for priority, _ in PRIORITY_WEIGHTS}
    assert {queue for *_, queue in sent} == {profile.queue for profile in CELERY_PROFILES}
    assert any(kwargs["fail"] for _, _, kwargs, _, _ in sent)
    late = [kwargs for name, _, kwargs, _, _ in sent if kwargs["work_ms"] > PDF_TIME_LIMIT_S * 1000]
    assert late and all(name == RENDER_TASK for name, _, kwargs, _, _ in sent
                        if kwargs["work_ms"] > PDF_TIME_LIMIT_S * 1000)


def test_celery_worker_command_line():
    argv = worker_argv("redis://127.0.0.1:6390/0", "demo-celery-ab12")
    assert argv[1:5] == ["-m", "celery", "-A", "queuewatch.demo.celery_app"]
    assert argv[argv.index("--broker") + 1] == "redis://127.0.0.1:6390/0"
    assert "-E" in argv and argv[argv.index("-Q") + 1] == ",".join(CELERY_QUEUES)
    assert argv[argv.index("--concurrency") + 1] == str(CELERY_CONCURRENCY)
    assert argv[argv.index("-n") + 1] == "demo-celery-ab12@%h"
