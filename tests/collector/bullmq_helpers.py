"""Helpers of the BullMQ reader tests: real Python bullmq workers and queues, readings by queue."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from bullmq import Queue

from collector.model import Cursor
from tests.conftest import REPO_ROOT

METRICS = {"metrics": {"maxDataPoints": 60}}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _command(url: str, queue: str, options: dict) -> list[str]:
    return [sys.executable, "-m", "tests.collector.bullmq_worker", url, queue, json.dumps(options)]


def run_worker(url: str, queue: str, *, prefix: str = "bull", **worker_opts) -> None:
    """Run a real bullmq Worker until the queue has nothing waiting or active."""
    subprocess.run(_command(url, queue, {"prefix": prefix, "worker": worker_opts}), cwd=REPO_ROOT, env=_env(),
                   check=True, timeout=60, stdout=subprocess.DEVNULL)


def start_worker(url: str, queue: str, **worker_opts) -> subprocess.Popen:
    """Start a real bullmq Worker that runs until killed; returns once its connections are named."""
    proc = subprocess.Popen(_command(url, queue, {"burst": False, "worker": worker_opts}), cwd=REPO_ROOT,
                            env=_env(), stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def add_jobs(url: str, queue: str, jobs: list[tuple[dict, dict]], *, prefix: str = "bull") -> list[str]:
    """Add (data, opts) jobs with bullmq's own Queue.add; returns their ids."""
    async def add() -> list[str]:
        q = Queue(queue, {"connection": url, "prefix": prefix})
        try:
            return [(await q.add("job", data, opts)).id for data, opts in jobs]
        finally:
            await q.close()
    return asyncio.run(add())


def on_queue(url: str, queue: str, call: str, *args, prefix: str = "bull"):
    """The result of one bullmq Queue method (getJobCounts, pause, obliterate...)."""
    async def go():
        q = Queue(queue, {"connection": url, "prefix": prefix})
        try:
            result = getattr(q, call)(*args)
            return await result if asyncio.iscoroutine(result) or asyncio.isfuture(result) else result
        finally:
            await q.close()
    return asyncio.run(go())


def by_name(reading) -> dict:
    return {q.queue_name: q for q in reading.queues}


def cursors_of(reading) -> dict[str, Cursor]:
    return {q.queue_name: q.cursor for q in reading.queues}


def wait_until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
