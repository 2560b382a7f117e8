"""What a collection cycle reads from Redis: plain data, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobFailure:
    """What a failed job left in Redis: its name, worker and error, all plain text as stored there."""

    name: str | None = None  # RQ: the description's function; BullMQ: the job name; Celery: the task name
    worker: str | None = None
    error_text: str | None = None  # the traceback or stack trace
    reason: str | None = None  # the one-line message when the library stores one apart (BullMQ failedReason)


@dataclass(frozen=True)
class FinishedJob:
    """A job that finished or failed since the previous cycle (times are epoch seconds, UTC)."""

    job_id: str
    failed: bool
    timed_out: bool
    enqueued_at_s: float | None
    started_at_s: float | None
    ended_at_s: float | None
    failure: JobFailure | None = None  # failed jobs only, when their error could be read
    timeout_s: float | None = None  # the job's configured timeout, where the library stores one

    @property
    def processing_ms(self) -> float | None:
        if self.started_at_s is None or self.ended_at_s is None:
            return None
        return max(0.0, (self.ended_at_s - self.started_at_s) * 1000.0)

    @property
    def wait_ms(self) -> float | None:
        if self.enqueued_at_s is None or self.started_at_s is None:
            return None
        return max(0.0, (self.started_at_s - self.enqueued_at_s) * 1000.0)


@dataclass(frozen=True)
class Cursor:
    """Highest registry scores already counted for a queue; None before the first cycle."""

    finished_score: float | None = None
    failed_score: float | None = None
    state: str | None = None  # backend-specific resume state (stored as text)
    # For a queue read without a stored cursor: count only the jobs that ended this recently (s), None: all.
    recent_past_s: float | None = None


@dataclass
class QueueReading:
    """One queue's state as read in one cycle."""

    queue_name: str
    library: str
    waiting: int
    active: int
    scheduled: int
    deferred: int
    failed: int
    completed: int
    oldest_enqueued_at_s: float | None
    cursor: Cursor
    new_finished: int = 0
    new_failed: int = 0
    new_timeouts: int = 0
    sampled_jobs: list[FinishedJob] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # library-specific figures (paused, priorities...)
    # When the counts start from an empty cursor (the recent past still held in Redis, read on a new
    # database's first cycle or for a queue that appeared since): the earliest end time (epoch s) of the jobs
    # counted, so the interval they cover is known. None when the counts cover one interval since the cursor.
    counted_since_s: float | None = None
    # QueueMetrics fields not measured for this queue alone (e.g. a key of the wrong type, a malformed count)
    unavailable: frozenset[str] = frozenset()

    @property
    def delayed(self) -> int:
        return self.scheduled + self.deferred


@dataclass
class WorkerReading:
    """One worker as registered in Redis (memory is added from psutil when it runs on this host)."""

    name: str
    library: str
    queues: list[str]
    pid: int | None
    hostname: str | None
    state: str
    alive: bool
    successful_jobs: int
    failed_jobs: int
    birth_at_s: float | None
    last_heartbeat_at_s: float | None
    current_job_id: str | None = None

    @property
    def jobs_processed(self) -> int:
        return self.successful_jobs + self.failed_jobs


@dataclass
class RedisReading:
    """Everything one cycle read from one Redis for one library."""

    read_at_s: float
    queues: list[QueueReading]
    workers: list[WorkerReading]
    round_trips: int
    unavailable: frozenset[str] = frozenset()  # QueueMetrics fields this backend cannot measure now
    workers_known: bool = True  # whether `workers` lists every live worker (False: no live worker is news)
