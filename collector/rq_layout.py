"""RQ's Redis key names (2.x and 3.x) and pure parsers for what RQ stores; no I/O."""
from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from collector.replies import text  # noqa: F401 - re-exported
from core.model import FinishedJob
from core.values import NAME_MAX, TEXT_MAX, as_float, as_text, epoch_s

DEFAULT_PREFIX = "rq"
PREFIX_ENV_VAR = "RQ_KEY_PREFIX"
TIMEOUT_EXCEPTION = "JobTimeoutException"
TIMESTAMP_MAX_CHARS = 64
_TIMEOUT_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?JobTimeoutException\b")


@dataclass(frozen=True)
class RQLayout:
    """Key names of one RQ deployment (RQ 2.x always uses "rq"; RQ 3.x reads RQ_KEY_PREFIX)."""

    prefix: str = DEFAULT_PREFIX

    @classmethod
    def for_version(cls, rq_major: int, environ: Mapping[str, str] | None = None) -> RQLayout:
        """The layout an RQ of this major version uses under this environment."""
        if rq_major < 3:
            return cls(DEFAULT_PREFIX)
        return cls((environ or {}).get(PREFIX_ENV_VAR) or DEFAULT_PREFIX)

    @property
    def queues_set(self) -> str:
        """SET of queue keys (`<prefix>:queue:<name>`)."""
        return f"{self.prefix}:queues"

    @property
    def queue_key_prefix(self) -> str:
        return f"{self.prefix}:queue:"

    def queue(self, name: str) -> str:
        """LIST of waiting job ids; workers pop from the left."""
        return f"{self.queue_key_prefix}{name}"

    def intermediate(self, name: str) -> str:
        """LIST of jobs popped by a worker but not yet started."""
        return f"{self.queue(name)}:intermediate"

    def queue_name(self, queue_key: str) -> str | None:
        """The queue name of a member of the queues set, None if it is not a queue key of this prefix."""
        if not queue_key.startswith(self.queue_key_prefix):
            return None
        return queue_key[len(self.queue_key_prefix):] or None

    def started(self, name: str) -> str:
        """ZSET of running executions (`<job_id>:<execution_id>`), score = heartbeat deadline."""
        return f"{self.prefix}:wip:{name}"

    def scheduled(self, name: str) -> str:
        """ZSET of scheduled jobs, score = run-at epoch seconds."""
        return f"{self.prefix}:scheduled:{name}"

    def deferred(self, name: str) -> str:
        """ZSET of jobs waiting on dependencies."""
        return f"{self.prefix}:deferred:{name}"

    def ready(self, name: str) -> str:
        """ZSET of dependents released but not yet pushed to the queue (RQ 3.x only, transient)."""
        return f"{self.prefix}:ready:{name}"

    def finished(self, name: str) -> str:
        """ZSET of finished jobs, score = finish time + result_ttl (+inf when kept forever)."""
        return f"{self.prefix}:finished:{name}"

    def failed(self, name: str) -> str:
        """ZSET of failed jobs, score = failure time + failure_ttl (+inf when kept forever)."""
        return f"{self.prefix}:failed:{name}"

    def canceled(self, name: str) -> str:
        """ZSET of canceled jobs."""
        return f"{self.prefix}:canceled:{name}"

    @property
    def job_key_prefix(self) -> str:
        return f"{self.prefix}:job:"

    def job(self, job_id: str) -> str:
        """HASH of one job."""
        return f"{self.job_key_prefix}{job_id}"

    def results(self, job_id: str) -> str:
        """STREAM of a job's results, newest last."""
        return f"{self.prefix}:results:{job_id}"

    @property
    def workers_set(self) -> str:
        """SET of worker keys (`<prefix>:worker:<name>`)."""
        return f"{self.prefix}:workers"

    def queue_workers(self, name: str) -> str:
        """SET of the worker keys listening on one queue."""
        return f"{self.prefix}:workers:{name}"

    @property
    def worker_key_prefix(self) -> str:
        return f"{self.prefix}:worker:"

    def worker(self, name: str) -> str:
        """HASH of one worker, expiring unless heartbeats refresh it."""
        return f"{self.worker_key_prefix}{name}"

    def worker_name(self, worker_key: str) -> str:
        """The worker name of a member of the workers set."""
        if worker_key.startswith(self.worker_key_prefix):
            return worker_key[len(self.worker_key_prefix):]
        return worker_key

    def worker_executions(self, name: str) -> str:
        """SET of a worker's running executions (`<job_id>:<execution_id>`, RQ 3.x)."""
        return f"{self.worker(name)}:executions"


def parse_timestamp_s(value: bytes | str | None) -> float | None:
    """An RQ timestamp (`%Y-%m-%dT%H:%M:%S[.%f]Z`, UTC) as epoch seconds; None if empty, malformed or implausible."""
    raw = text(value)
    if not raw or len(raw) > TIMESTAMP_MAX_CHARS:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return epoch_s(parsed.timestamp())
    except (ValueError, OverflowError, OSError):
        return None


def job_id_of_execution(member: bytes | str) -> str:
    """The job id of a `<job_id>:<execution_id>` registry member (a bare job id stays as it is)."""
    raw = text(member) or ""
    job_id, sep, _ = raw.rpartition(":")
    return job_id if sep else raw


def decode_result_exc_string(value: bytes | str | None) -> str | None:
    """A results-stream `exc_string` (base64 of zlib) as text; None if absent or unreadable."""
    raw = text(value)
    if not raw or len(raw) > TEXT_MAX * 4:
        return None
    try:
        return _inflate(base64.b64decode(raw))
    except (binascii.Error, zlib.error, ValueError):
        return None


def decode_job_exc_info(value: bytes | str | None) -> str | None:
    """The traceback of a job hash's `exc_info` (zlib, or plain text in old RQ); None if absent."""
    if value is None or value == b"" or value == "":
        return None
    if isinstance(value, bytes):
        try:
            return _inflate(value)
        except zlib.error:
            return as_text(value)
    return as_text(value)


def _inflate(data: bytes) -> str:
    """zlib-compressed text, of which at most the last TEXT_MAX characters are kept (the exception's name)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, TEXT_MAX * 4)
    while inflater.unconsumed_tail:
        out = (out + inflater.decompress(inflater.unconsumed_tail, TEXT_MAX * 4))[-TEXT_MAX * 4:]
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return out.decode("utf-8", errors="replace")[-TEXT_MAX:]


def is_timeout(exc_string: str | None) -> bool:
    """Whether a failed job's traceback ends in RQ's JobTimeoutException."""
    if not exc_string:
        return False
    lines = [line.strip() for line in exc_string.strip().splitlines() if line.strip()]
    return bool(lines) and _TIMEOUT_LINE.match(lines[-1]) is not None


def function_name(description: str | None) -> str | None:
    """The function of an RQ job description such as `app.tasks.send(1, 'x')`: the text before the first `(`."""
    if not description:
        return None
    return description.split("(", 1)[0].strip() or None


def configured_timeout_s(jobs: Sequence[FinishedJob]) -> float | None:
    """The timeout most of these jobs had (the larger on a tie); None when none stored one."""
    counts: dict[float, int] = {}
    for job in jobs:
        if job.timeout_s is not None:
            counts[job.timeout_s] = counts.get(job.timeout_s, 0) + 1
    return max(counts, key=lambda t: (counts[t], t)) if counts else None


def job_info(fields: Sequence[Any]) -> tuple[str | None, str | None, float | None]:
    """(description, worker name, timeout in s) of the JOB_INFO_FIELDS part of an HMGET reply."""
    description, worker, timeout = (list(fields) + [None] * 3)[:3]
    timeout_s = as_float(timeout)
    return (as_text(description, 1000), as_text(worker, NAME_MAX),
            timeout_s if timeout_s is not None and timeout_s > 0 else None)
