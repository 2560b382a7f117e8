"""What the demo's BullMQ workers run: image resizes and search indexing that sleep, fail or time out."""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from bullmq import Job, Worker

from queuewatch_agent.bullmq import monitored

METRICS_DATA_POINTS = 120
"""Minutes of per-minute counts the `metrics` option keeps (the collector reads only the running totals)."""
DRAIN_DELAY_S = 5


class ImageDecodeError(ValueError):
    """An uploaded image could not be decoded."""


class IndexRejectedError(RuntimeError):
    """The search cluster refused a document."""


def subject_of(job_name: str, data: dict[str, Any]) -> str:
    """What a job works on, for messages: `image 12` or `document 7 (products)`."""
    if "image_id" in data:
        return f"image {data['image_id']}"
    return f"document {data.get('document_id')} ({data.get('index', '?')})"


async def _work(job_name: str, data: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, float(data.get("work_ms", 0))) / 1000.0)
    if data.get("fail"):
        if "image_id" in data:
            raise ImageDecodeError(f"{subject_of(job_name, data)}: truncated JPEG data at byte "
                                   f"{int(data['image_id']) * 37 % 90_000}")
        raise IndexRejectedError(f"{subject_of(job_name, data)}: mapper_parsing_exception on field 'price'")
    return {"done": subject_of(job_name, data)}


async def process(job: Job, token: str) -> dict[str, Any]:
    """Run one job under an asyncio timeout of `timeout_s` (its data); a late job fails with TimeoutError."""
    data = job.data or {}
    timeout_s = float(data.get("timeout_s", 30))
    try:
        return await asyncio.wait_for(_work(job.name, data), timeout=timeout_s)
    except TimeoutError as exc:
        subject = subject_of(job.name, data)
        raise TimeoutError(f"{job.name} of {subject} timed out after {timeout_s:g} s") from exc


def worker_options(redis_url: str, name: str, concurrency: int) -> dict[str, Any]:
    """bullmq Worker options of a demo worker: named, `metrics` on."""
    return {"connection": redis_url, "name": name, "concurrency": concurrency, "drainDelay": DRAIN_DELAY_S,
            "metrics": {"maxDataPoints": METRICS_DATA_POINTS}}


async def run_workers(redis_url: str, queues: Sequence[str], name: str, concurrency: int, stop: asyncio.Event,
                      log: Callable[[str], None] = print, summary_every_s: float = 60.0) -> Counter[str]:
    """One bullmq Worker per queue until `stop` is set, then close them (running jobs finish first)."""
    finished: Counter[str] = Counter()
    workers = []
    for queue in queues:
        worker = monitored(Worker(queue, process, worker_options(redis_url, name, concurrency)))
        worker.on("completed", lambda job, result, q=queue: finished.update([f"{q}:completed"]))
        worker.on("failed", lambda job, err, q=queue: finished.update([f"{q}:failed"]))
        worker.on("error", lambda err, *_: log(f"worker error: {err!r}"))
        workers.append(worker)
    log(f"{name}: {len(workers)} bullmq worker(s) on {', '.join(queues)}, concurrency {concurrency}")
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=summary_every_s)
        except TimeoutError:
            log(f"{name}: finished so far {dict(finished)}")
    await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
    log(f"{name}: stopped after {dict(finished)}")
    return finished
