"""The recent past of a queue read for the first time from registries: the span in which they are complete."""
from __future__ import annotations

from dataclasses import replace

from core.model import QueueReading


def recent_past(reading: QueueReading, read_at_s: float, horizon_s: float) -> QueueReading:
    """A queue's first reading, trimmed to the jobs that ended in the last `horizon_s` and still held in Redis.

    The reader counted everything its registries hold (cursor 0) and timed the newest of them. Only the span
    in which every registry is complete is kept: from `read_at_s - horizon_s`, or, when some jobs were not
    sampled, from the oldest sampled end of each kind (finished, failed), since newer ones were all sampled.
    Counts are then those of the sampled jobs in the span, exactly; `counted_since_s` is its start.
    """
    since_s = read_at_s - horizon_s
    jobs = [job for job in reading.sampled_jobs if job.ended_at_s is not None]
    if reading.new_finished + reading.new_failed > len(jobs):
        for failed in (False, True):
            ends = [job.ended_at_s for job in jobs if job.failed == failed]
            if ends:
                since_s = max(since_s, min(ends))
    kept = [job for job in jobs if job.ended_at_s >= since_s]
    return replace(reading, sampled_jobs=kept, counted_since_s=since_s,
                   new_finished=sum(1 for job in kept if not job.failed),
                   new_failed=sum(1 for job in kept if job.failed),
                   new_timeouts=sum(1 for job in kept if job.timed_out))
