"""Look a job up by id in Redis, per library, read-only: state, queue, timings, result or error (plain text).

Reads only: HGETALL of the job hash, XREVRANGE COUNT 1 of RQ's results stream, SCAN of BullMQ's `:meta` keys
and GET of Celery's result key. Nothing is deserialised that could run code: RQ's pickled return values are
reported by size only; BullMQ's return values are JSON text and Celery's results JSON (shown as text).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from collector.bullmq_layout import BullMQLayout, ms_to_s
from collector.celery_layout import RESULT_KEY_PREFIX, parse_iso_s
from collector.rq_layout import (
    RQLayout, decode_job_exc_info, decode_result_exc_string, function_name, parse_timestamp_s, text,
)
from core.values import NAME_MAX, as_text

JOB_ID_MAX = 255
TEXT_SHOWN_MAX = 20_000
BULLMQ_QUEUES_MAX = 10_000
SCAN_COUNT = 1000
RQ_RESULT_TYPES = {1: "finished", 2: "failed", 3: "stopped", 4: "retried", 5: "failed"}


@dataclass(frozen=True)
class FoundJob:
    """One job as its library stored it (times epoch s, UTC)."""

    library: str
    queue: str | None
    job_id: str
    state: str
    name: str | None = None
    enqueued_at_s: float | None = None
    started_at_s: float | None = None
    ended_at_s: float | None = None
    worker: str | None = None
    result: str | None = None
    error: str | None = None  # traceback or stack trace
    reason: str | None = None  # one-line failure message where stored apart
    source: str = ""  # the Redis it was found on (no password)

    @property
    def wait_s(self) -> float | None:
        if self.enqueued_at_s is None or self.started_at_s is None:
            return None
        return max(0.0, self.started_at_s - self.enqueued_at_s)

    @property
    def run_s(self) -> float | None:
        if self.started_at_s is None or self.ended_at_s is None:
            return None
        return max(0.0, self.ended_at_s - self.started_at_s)


def usable_job_id(job_id: str) -> str | None:
    """The id stripped of surrounding blanks; None when empty, too long or holding NUL or glob characters."""
    job_id = job_id.strip()
    if not job_id or len(job_id) > JOB_ID_MAX or any(c in job_id for c in "\x00*?[]"):
        return None
    return job_id


def _shown(value: Any) -> str | None:
    return as_text(value, TEXT_SHOWN_MAX)


def _fields(reply: Any) -> dict[str, Any]:
    return {text(k): v for k, v in (reply or {}).items()} if isinstance(reply, Mapping) else {}


def lookup_rq(client: redis.Redis, job_id: str, layout: RQLayout = RQLayout()) -> FoundJob | None:
    """An RQ job: its hash (status, origin, times, description, worker) and its newest result entry."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(layout.job(job_id))
    pipe.xrevrange(layout.results(job_id), "+", "-", count=1)
    job_reply, results = pipe.execute(raise_on_error=False)
    job = _fields(job_reply if not isinstance(job_reply, Exception) else {})
    if not job:
        return None
    latest = {} if isinstance(results, Exception) or not results else _fields(results[0][1])
    result_type = int(text(latest.get("type")) or 0) if (text(latest.get("type")) or "").isdigit() else 0
    error = decode_result_exc_string(latest.get("exc_string")) or decode_job_exc_info(job.get("exc_info"))
    result = None
    raw_value = latest.get("return_value", job.get("result"))
    if raw_value not in (None, b"", ""):
        result = f"a pickled value of {len(raw_value):,} bytes (not decoded: unpickling data from Redis could run code)"
    state = text(job.get("status")) or RQ_RESULT_TYPES.get(result_type) or "unknown"
    return FoundJob(
        library="rq", queue=as_text(job.get("origin"), NAME_MAX), job_id=job_id, state=state,
        name=function_name(as_text(job.get("description"), 1000)),
        enqueued_at_s=parse_timestamp_s(job.get("enqueued_at")), started_at_s=parse_timestamp_s(job.get("started_at")),
        ended_at_s=parse_timestamp_s(job.get("ended_at")), worker=as_text(job.get("worker_name"), NAME_MAX),
        result=result, error=error[-TEXT_SHOWN_MAX:] if error else None)


def bullmq_queues(client: redis.Redis, layouts: Sequence[BullMQLayout]) -> list[tuple[BullMQLayout, str]]:
    """(layout, queue) of every `:meta` hash under the prefixes (SCAN, at most BULLMQ_QUEUES_MAX)."""
    found: list[tuple[BullMQLayout, str]] = []
    for layout in layouts:
        for key in client.scan_iter(match=layout.meta_pattern, count=SCAN_COUNT, _type="hash"):
            queue = layout.queue_of_meta_key(text(key) or "")
            if queue:
                found.append((layout, queue))
            if len(found) >= BULLMQ_QUEUES_MAX:
                return found
    return found


def _bullmq_state(job: Mapping[str, Any]) -> str:
    if job.get("finishedOn"):
        return "failed" if job.get("failedReason") else "completed"
    if job.get("processedOn"):
        return "active"
    delay = text(job.get("delay")) or "0"
    return "delayed" if delay not in ("0", "") else "waiting"


def _last_stack(raw: Any) -> str | None:
    stack = _shown(raw)
    if not stack:
        return None
    try:
        items = json.loads(stack)
    except (ValueError, RecursionError):
        return stack
    texts = [item for item in items if isinstance(item, str)] if isinstance(items, list) else []
    return texts[-1] if texts else None


def lookup_bullmq(client: redis.Redis, job_id: str, prefixes: Iterable[str] = ("bull",)) -> list[FoundJob]:
    """Every BullMQ queue's job with this id (ids are per queue, so several queues may have one)."""
    queues = bullmq_queues(client, [BullMQLayout(prefix) for prefix in dict.fromkeys(prefixes)])
    if not queues:
        return []
    pipe = client.pipeline(transaction=False)
    for layout, queue in queues:
        pipe.hgetall(layout.job(queue, job_id))
    found = []
    for (layout, queue), reply in zip(queues, pipe.execute(raise_on_error=False)):
        job = _fields(reply if not isinstance(reply, Exception) else {})
        if not job or "timestamp" not in job:
            continue
        delay_ms = float(text(job.get("delay")) or 0) if (text(job.get("delay")) or "0").isdigit() else 0.0
        enqueued = ms_to_s(job.get("timestamp"))
        found.append(FoundJob(
            library="bullmq", queue=queue, job_id=job_id, state=_bullmq_state(job), name=_shown(job.get("name")),
            enqueued_at_s=enqueued + delay_ms / 1000.0 if enqueued is not None else None,
            started_at_s=ms_to_s(job.get("processedOn")), ended_at_s=ms_to_s(job.get("finishedOn")),
            worker=as_text(job.get("pb"), NAME_MAX), result=_shown(job.get("returnvalue")),
            error=_last_stack(job.get("stacktrace")), reason=_shown(job.get("failedReason"))))
    return found


def lookup_celery(client: redis.Redis, job_id: str, key_prefix: str = "") -> FoundJob | None:
    """A Celery task's stored result (`celery-task-meta-<id>`, JSON); None when no result is stored."""
    raw = client.get(f"{key_prefix}{RESULT_KEY_PREFIX}{job_id}")
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return FoundJob(library="celery", queue=None, job_id=job_id, state="unknown",
                        result=f"a stored result of {len(raw):,} bytes that is not JSON (not decoded)")
    if not isinstance(meta, dict):
        return None
    status = str(meta.get("status") or "unknown").lower()
    failed = status == "failure"
    result = meta.get("result")
    shown = None if result is None else _shown(json.dumps(result, ensure_ascii=False, sort_keys=True, default=str))
    reason = None
    if failed and isinstance(result, dict) and result.get("exc_type"):
        reason = f"{result.get('exc_type')}: {_flat(result.get('exc_message'))}"
    return FoundJob(
        library="celery", queue=as_text(meta.get("queue"), NAME_MAX) if meta.get("queue") else None, job_id=job_id,
        state=status, name=_shown(meta.get("name")) if meta.get("name") else None,
        ended_at_s=parse_iso_s(meta.get("date_done")),
        worker=as_text(meta.get("worker"), NAME_MAX) if meta.get("worker") else None,
        result=None if failed else shown, error=_shown(meta.get("traceback")) if meta.get("traceback") else None,
        reason=reason)


def _flat(message: Any) -> str:
    if isinstance(message, (list, tuple)):
        return ", ".join(str(part) for part in message)
    return str(message)


@dataclass(frozen=True)
class LookupTarget:
    """One configured Redis and the libraries read on it."""

    client: redis.Redis
    source: str  # URL without password, for display
    libraries: tuple[str, ...]
    rq_layout: RQLayout = RQLayout()
    bullmq_prefixes: tuple[str, ...] = ("bull",)


def lookup_everywhere(targets: Sequence[LookupTarget], job_id: str) -> tuple[list[FoundJob], list[str]]:
    """The job in every configured Redis and library, and the Redis that could not be read (with why)."""
    found: list[FoundJob] = []
    errors: list[str] = []
    for target in targets:
        try:
            if "rq" in target.libraries and (job := lookup_rq(target.client, job_id, target.rq_layout)):
                found.append(job)
            if "bullmq" in target.libraries:
                found.extend(lookup_bullmq(target.client, job_id, target.bullmq_prefixes))
            if "celery" in target.libraries and (job := lookup_celery(target.client, job_id)):
                found.append(job)
        except redis.RedisError as exc:
            errors.append(f"{target.source}: {type(exc).__name__}: {exc}")
            continue
        found = [job if job.source else replace(job, source=target.source) for job in found]
    return found, errors
