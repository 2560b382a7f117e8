"""Helpers of the Celery reader tests: kombu message envelopes, polling, real workers, readers and their totals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from collector.celery_reader import CeleryReader
from tests.collector.celery_app import BACKEND_ENV, BROKER_ENV
from tests.conftest import REPO_ROOT


def envelope(body, *, headers: dict | None = None) -> str:
    """A message the way kombu's Redis transport stores or publishes it (JSON body, base64)."""
    import base64

    return json.dumps({"body": base64.b64encode(json.dumps(body).encode()).decode(), "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": headers or {},
                       "properties": {"body_encoding": "base64", "delivery_info": {}, "priority": 0}})


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Totals:
    """Reads repeatedly and adds up what each queue reported (reads drain the events)."""

    def __init__(self, reader: CeleryReader) -> None:
        self.reader = reader
        self.finished: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.jobs: dict[str, list] = {}
        self.names: set[str] = set()  # every queue any read reported
        self.counted_since: set = set()  # every counted_since_s reported
        self.last = None

    def read(self):
        self.last = self.reader.read({})
        for q in self.last.queues:
            self.finished[q.queue_name] = self.finished.get(q.queue_name, 0) + q.new_finished
            self.failed[q.queue_name] = self.failed.get(q.queue_name, 0) + q.new_failed
            self.timeouts[q.queue_name] = self.timeouts.get(q.queue_name, 0) + q.new_timeouts
            self.jobs.setdefault(q.queue_name, []).extend(q.sampled_jobs)
            self.names.add(q.queue_name)
            self.counted_since.add(q.counted_since_s)
        return self.last

    def ended(self) -> int:
        return sum(self.finished.values()) + sum(self.failed.values())

    def queue(self, name: str):
        return {q.queue_name: q for q in self.last.queues}[name]


@pytest.fixture
def open_reader() -> Iterator[Callable[..., CeleryReader]]:
    """Makes readers whose listener threads are stopped at the end of the test."""
    opened: list[CeleryReader] = []

    def make(client: redis.Redis, **options) -> CeleryReader:
        reader = CeleryReader(client, **options)
        opened.append(reader)
        return reader

    yield make
    for reader in opened:
        reader.close()


@pytest.fixture
def start_worker(redis_url) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts real `celery worker` processes (killed at the end of the test)."""
    started: list[subprocess.Popen] = []

    def start(*queues: str, events: bool = True, pool: str = "solo", concurrency: int = 1,
              backend: bool = False) -> subprocess.Popen:
        env = {**os.environ, BROKER_ENV: redis_url, BACKEND_ENV: redis_url if backend else "",
               "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        command = [str(Path(sys.executable).parent / "celery"), "-A", "tests.collector.celery_app", "worker",
                   *(["-E"] if events else []), f"--pool={pool}", f"--concurrency={concurrency}",
                   "-Q", ",".join(queues), "-n", f"w{len(started)}-{uuid.uuid4().hex[:6]}@%h",
                   "--without-gossip", "--without-mingle", "--loglevel=WARNING"]
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
