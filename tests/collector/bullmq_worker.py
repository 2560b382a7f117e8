"""A real Python bullmq Worker for the reader tests: `python -m tests.collector.bullmq_worker URL QUEUE [OPTIONS_JSON]`.

Job data drives the processor: {"sleep_s": s} sleeps, {"fail": text} raises ValueError(text),
{"wait_for_s": s, "sleep_s": t} runs the sleep under asyncio.wait_for (TimeoutError when t > s).
Options: "burst" (default true: exit once wait, prioritized and active are empty), "worker" (bullmq Worker
options such as name, concurrency, metrics, removeOnComplete, lockDuration, stalledInterval,
maxStalledCount), "prefix", "agent" (report memory with queuewatch_agent.bullmq.monitored). Prints "ready"
once its connections are named.
"""
from __future__ import annotations

import asyncio
import json
import sys

from bullmq import Queue, Worker


async def process(job, token):
    """Sleep, fail or time out as the job's data says."""
    data = job.data or {}
    if data.get("fail"):
        raise ValueError(data["fail"])
    sleep_s = float(data.get("sleep_s", 0))
    if data.get("wait_for_s") is not None:
        await asyncio.wait_for(asyncio.sleep(sleep_s), timeout=float(data["wait_for_s"]))
    elif sleep_s:
        await asyncio.sleep(sleep_s)
    return {"slept_s": sleep_s}


async def run(url: str, queue_name: str, options: dict) -> None:
    prefix = options.get("prefix", "bull")
    worker_opts = {"connection": url, "prefix": prefix, "drainDelay": 1, **options.get("worker", {})}
    worker = Worker(queue_name, process, worker_opts)
    if options.get("agent"):
        from queuewatch_agent.bullmq import monitored

        monitored(worker)
    queue = Queue(queue_name, {"connection": url, "prefix": prefix})
    try:
        while not worker._client_name_set:
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        if not options.get("burst", True):
            await asyncio.Event().wait()
        while True:
            counts = await queue.getJobCounts("waiting", "prioritized", "active")
            if not any(counts.values()):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.close()
        await queue.close()


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
