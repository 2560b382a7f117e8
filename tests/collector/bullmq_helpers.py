"""Helpers of the BullMQ reader tests: real Python bullmq workers and queues, readings by queue."""
from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time

from bullmq import Queue

from core.model import Cursor
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


def start_worker(url: str, queue: str, *, prefix: str = "bull", agent: bool = False,
                 env: dict[str, str] | None = None, **worker_opts) -> subprocess.Popen:
    """Start a real bullmq Worker that runs until killed; returns once its connections are named."""
    options = {"burst": False, "prefix": prefix, "agent": agent, "worker": worker_opts}
    proc = subprocess.Popen(_command(url, queue, options), cwd=REPO_ROOT, env={**_env(), **(env or {})},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def run_node_worker(url: str, queue: str, worker_js, **worker_opts) -> None:
    """Run tests/collector/node/worker.js (a real Node bullmq Worker) until the queue is drained."""
    subprocess.run(["node", str(worker_js), url, queue, json.dumps({"worker": worker_opts})], check=True,
                   timeout=60, stdout=subprocess.DEVNULL)


def finished_jobs(url: str, queue: str, *, prefix: str = "bull") -> list:
    """Every job of `:completed` and `:failed`, read with bullmq's own Queue.getJobs."""
    return on_queue(url, queue, "getJobs", ["completed", "failed"], 0, -1, prefix=prefix)


def nearest_rank(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


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
