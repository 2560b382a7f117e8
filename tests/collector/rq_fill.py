"""Real RQ queues for the connection tests: jobs that finished, failed and still wait, and RQ's own counts."""
from __future__ import annotations

import redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from tests.collector import rq_jobs

FIELDS = ("waiting", "active", "failed", "completed")


def fill_rq(client: redis.Redis, *names: str, finished: int = 3, failed: int = 2, waiting: int = 4) -> None:
    """Per queue: `finished` jobs run, `failed` jobs fail (a real RQ worker, in this process), `waiting` left."""
    queues = [Queue(name, connection=client) for name in names]
    for queue in queues:
        for _ in range(finished):
            queue.enqueue(rq_jobs.noop)
        for _ in range(failed):
            queue.enqueue(rq_jobs.fail)
    SimpleWorker(queues, connection=client).work(burst=True)
    for queue in queues:
        for _ in range(waiting):
            queue.enqueue(rq_jobs.noop)


def rq_counts(client: redis.Redis, name: str) -> dict[str, int]:
    """What RQ itself counts for one queue (registries read without cleanup)."""
    queue = Queue(name, connection=client)
    return {"waiting": queue.count, "active": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "failed": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "completed": FinishedJobRegistry(queue=queue).get_job_count(cleanup=False)}


def stored_counts(row: dict) -> dict[str, int]:
    return {field: row[field] for field in FIELDS}
