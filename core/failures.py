"""Failed jobs as shown on Queue detail: exception type and message parsed from the text the library stored.

Everything here is plain text from Redis; nothing is interpreted as markup.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.model import FinishedJob, QueueReading

MESSAGE_MAX = 1000
TRACEBACK_MAX = 20_000
UNKNOWN_TYPE = "unknown"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", re.S)
"""`pkg.module.SomeError: message` (the message may be absent)."""
_REPR = re.compile(r"^([A-Za-z_]\w*)\((.*)\)$", re.S)
"""Celery's `exception` field, repr of the exception: `ValueError('known failure 42')`."""


@dataclass(frozen=True)
class FailureRecord:
    """One failed job as stored in job_failures (times epoch s, UTC)."""

    library: str
    queue_name: str
    job_id: str
    failed_at_s: float
    job_name: str | None
    exception_type: str
    message: str | None
    traceback: str | None
    worker: str | None
    run_ms: float | None


def exception_parts(error_text: str | None, reason: str | None = None) -> tuple[str, str | None]:
    """(exception type, message) of a failure: the last line of a Python traceback, the first line of a
    JavaScript stack, or a repr such as `ValueError('x')`.

    `reason` is a one-line message stored apart (BullMQ failedReason, Celery's exception repr) and is the
    message when given. The type is the exception's class name without its module; "unknown" when no line
    names one.
    """
    lines = [line.strip() for line in (error_text or "").strip().splitlines() if line.strip()]
    reason = reason.strip() if reason and reason.strip() else None
    line = None
    if lines:
        line = lines[-1] if lines[0].startswith("Traceback") or len(lines) == 1 else lines[0]
    if reason and (repr_match := _REPR.match(reason)):
        inner = repr_match.group(2).strip()
        if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
            inner = inner[1:-1]
        return repr_match.group(1), _cut(inner or None)
    match = _EXCEPTION_LINE.match(line) if line else None
    if match is None and reason:
        match = _EXCEPTION_LINE.match(reason)
        if match and match.group(2) is None:
            match = None  # a bare word as failedReason is a message, not a type
    if match is None:
        return UNKNOWN_TYPE, _cut(reason or line)
    return match.group(1).rsplit(".", 1)[-1], _cut(reason or match.group(2) or None)


def _cut(text: str | None, limit: int = MESSAGE_MAX) -> str | None:
    return text[:limit] if text else text


def failure_record(queue: QueueReading, job: FinishedJob, read_at_s: float) -> FailureRecord | None:
    """The stored form of one sampled failed job; None for a job that did not fail."""
    if not job.failed:
        return None
    failure = job.failure
    error_text = failure.error_text if failure else None
    exception_type, message = exception_parts(error_text, failure.reason if failure else None)
    if job.timed_out and exception_type == UNKNOWN_TYPE:
        exception_type = "Timeout"
    return FailureRecord(
        library=queue.library, queue_name=queue.queue_name, job_id=job.job_id,
        failed_at_s=job.ended_at_s if job.ended_at_s is not None else read_at_s,
        job_name=failure.name if failure else None, exception_type=exception_type, message=message,
        traceback=error_text[-TRACEBACK_MAX:] if error_text else None,
        worker=failure.worker if failure else None, run_ms=job.processing_ms)


def failure_records(queues: list[QueueReading], read_at_s: float) -> list[FailureRecord]:
    """Every sampled failed job of the queues read in one cycle."""
    return [record for queue in queues for job in queue.sampled_jobs
            if (record := failure_record(queue, job, read_at_s)) is not None]
