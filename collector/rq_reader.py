"""The RQ backend: reads RQ queues, registries and workers from Redis in three round trips, never writing.

Round trips per cycle, whatever the number of queues, jobs or workers:
1. discovery: SMEMBERS of the queues set and of the workers set;
2. snapshot, one MULTI/EXEC so that counts, registry tops and TIME agree: LLEN and ZCARDs per queue, a few
   head ids (LRANGE 0 head_probe-1), ZCOUNT/ZREVRANGEBYSCORE above the cursor of the finished and failed
   registries, HGETALL and SMEMBERS of executions per worker;
3. details: HMGET of the sampled and head job hashes (times, description, worker_name, timeout), XREVRANGE
   COUNT 1 of the failed jobs' results streams.
Round trip 3 is skipped when there is nothing to look up.

Cursors. A registry's score is the time the job entered it (whole seconds) plus the ttl, so with a constant
ttl per registry the order of scores is the order of finishes and `ZCOUNT key (cursor (+inf` counts exactly
the entries added since the cycle that returned `cursor`. Two refinements:
- Entries added in the same second share one score. When the newest score's jobs ended less than `settle_s`
  ago (Redis clock vs the jobs' ended_at), more jobs may still land on that score, so that score is held
  back: it is neither counted nor sampled, and the cursor stays at the highest score below it; the next
  cycle counts it.
  If more than `sample_jobs` entries share the newest score the hold-back is skipped (it cannot be counted
  exactly in one snapshot).
- `+inf` scores (result_ttl/failure_ttl of -1) never expire and all look the same, so they are excluded from
  new_finished/new_failed and from samples (they stay in the completed/failed totals) and never become a
  cursor: a cursor is always finite.
Without a previous cursor the reading is a baseline: new_* are 0 and the cursor is the highest finite score
(0.0 for an empty registry), so a restarted collector that passes its stored cursors never counts twice.
A queue's first reading is such a baseline too, so jobs that finished before a new queue was first seen
are not counted as new.
A cursor above every score (Redis flushed, ttl lowered) counts nothing until new scores pass it.

Timeouts: `new_timeouts` is the number of sampled failed jobs whose traceback ends in JobTimeoutException,
scaled by new_failed / sampled failed jobs when the sample did not cover all of them. The traceback comes
from the newest results-stream entry (RQ >= 1.12 writes only there); the job hash's zlib `exc_info` of older
RQs is read as a fallback unless the client decodes responses (binary zlib cannot be decoded as text).

Failures and timeouts: each sampled failed job carries its function (the description up to `(`), worker and
traceback (core.model.JobFailure); each queue's reading carries in `details["timeout_s"]` the job timeout
most of the newest sampled jobs had (remembered between cycles).

Workers: a worker in the workers set is alive when its hash exists, has no `death` field, its last
heartbeat is at most `worker_stale_after_s` old (Redis clock) and, when it reports this host's name, its pid
exists (`pid_alive=None` turns that check off). Anything else is reported with state "stale".
"""
from __future__ import annotations

import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from core.model import Cursor, FinishedJob, JobFailure, QueueReading, RedisReading, WorkerReading
from core.problems import ProblemLog
from core.recent import recent_past
from collector.roundtrips import counting
from collector.rq_workers import STALE_STATE, WorkerSource, pid_alive, worker_reading  # noqa: F401 - re-exported
from collector.rq_layout import (
    RQLayout,
    decode_job_exc_info,
    decode_result_exc_string,
    configured_timeout_s,
    function_name,
    job_info as parse_job_info,
    is_timeout,
    parse_timestamp_s,
    text,
)
from core.values import NAME_MAX, as_int, as_name, as_text, finite_score

LIBRARY = "rq"
DEFAULT_SAMPLE_JOBS = 500
DEFAULT_HEAD_PROBE = 5
DEFAULT_SETTLE_S = 2.0
DEFAULT_WORKER_STALE_AFTER_S = 480.0
EMPTY_REGISTRY_CURSOR = 0.0
JOB_TIME_FIELDS = ("status", "enqueued_at", "started_at", "ended_at")
JOB_INFO_FIELDS = ("description", "worker_name", "timeout")
"""Read with the times: what a failure shows (function, worker) and the job's configured timeout (s)."""
FAILURE_TEXT_MAX = 20_000
_COUNTS = ("waiting", "active", "scheduled", "deferred", "failed", "completed")
COUNT_FIELDS = {"waiting": "waiting", "active": "active", "scheduled": "delayed", "deferred": "delayed",
                "failed": "failed", "completed": "completed"}
"""The QueueMetrics field each count feeds (unavailable when its key cannot be read)."""
FLOW_FIELDS = frozenset({"jobsPerMinute", "errorRate", "timeoutRate"})
"""What a registry that cannot be read leaves unmeasured, besides its own count."""


@dataclass
class _RegistryTop:
    """A finished or failed registry as seen in the snapshot: entries above the cursor, newest first."""

    failed: bool
    cursor: float | None
    total_above: int
    entries: list[tuple[str, float]]
    limit: int
    readable: bool = True


@dataclass
class _Details:
    """What round trip 3 found: head enqueue times, sampled job times and failure tracebacks by job id."""

    head_times: dict[str, float | None]
    job_times: dict[str, tuple[float | None, float | None, float | None] | None]
    failure_texts: dict[str, str | None]
    job_info: dict[str, tuple[str | None, str | None, float | None]] = field(default_factory=dict)

    def ended_at_s(self, job_id: str) -> float | None:
        times = self.job_times.get(job_id)
        return times[2] if times else None

    def sample(self, job_id: str, *, failed: bool) -> FinishedJob | None:
        """A sampled job with its times; None when its hash is gone."""
        times = self.job_times.get(job_id)
        if times is None:
            return None
        enqueued_at_s, started_at_s, ended_at_s = times
        timed_out = failed and is_timeout(self.failure_texts.get(job_id))
        description, worker, timeout_s = self.job_info.get(job_id, (None, None, None))
        failure = JobFailure(name=function_name(description), worker=worker,
                             error_text=self.failure_texts.get(job_id)) if failed else None
        return FinishedJob(job_id=job_id, failed=failed, timed_out=timed_out, enqueued_at_s=enqueued_at_s,
                           started_at_s=started_at_s, ended_at_s=ended_at_s, failure=failure, timeout_s=timeout_s)


class RQReader:
    """Reads RQ's state from one Redis without changing it."""

    library = LIBRARY

    def __init__(self, client: redis.Redis, *, key_prefix: str = "rq", sample_jobs: int = DEFAULT_SAMPLE_JOBS,
                 head_probe: int = DEFAULT_HEAD_PROBE, settle_s: float = DEFAULT_SETTLE_S,
                 worker_stale_after_s: float = DEFAULT_WORKER_STALE_AFTER_S, hostname: str | None = None,
                 pid_alive: Callable[[int], bool] | None = pid_alive, problems: ProblemLog | None = None,
                 atomic: bool = True) -> None:
        self.client = counting(client)
        self.atomic = atomic
        self.layout = RQLayout(key_prefix)
        self.sample_jobs = max(0, sample_jobs)
        self.head_probe = max(1, head_probe)
        self.settle_s = settle_s
        self.worker_stale_after_s = worker_stale_after_s
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.pid_alive = pid_alive
        self.problems = problems or ProblemLog()
        self.timeouts_s: dict[str, float] = {}  # queue -> the job timeout most sampled jobs had, last seen
        self._raw_replies = not client.connection_pool.connection_kwargs.get("decode_responses", False)

    def read(self, cursors: Mapping[str, Cursor], *, unseen: Cursor = Cursor()) -> RedisReading:
        """One cycle: every queue's counts, new finishes since its cursor, and every registered worker.

        `unseen` is the cursor of a queue missing from `cursors`: the default makes its reading a baseline;
        Cursor(0.0, 0.0) counts everything in its registries (a queue that appeared since the last cycle), and
        with `recent_past_s` only the jobs that ended that recently (see core.recent.recent_past).
        """
        trips_before = self.client.round_trips
        queue_names, worker_keys = self._discover()
        first = {name for name in queue_names if not cursors.get(name)}
        cursors = {name: cursors.get(name) or unseen for name in queue_names}
        read_at_s, counts, heads, tops, worker_replies = self._snapshot(queue_names, worker_keys, cursors)
        details = self._details(heads, tops)
        queues = [reading for reading in (
            self.problems.guard(self.layout.queue(name), "queue", lambda name=name: self._queue_reading(
                name, counts[name], heads[name], tops[name], details, read_at_s))
            for name in queue_names) if reading is not None]
        if unseen.recent_past_s is not None:
            queues = [recent_past(q, read_at_s, unseen.recent_past_s) if q.queue_name in first else q
                      for q in queues]
        workers = [worker for worker in (
            self.problems.guard(key, "worker", lambda key=key, replies=replies: self._worker_reading(
                key, *replies, read_at_s))
            for key, replies in zip(worker_keys, worker_replies)) if worker is not None]
        return RedisReading(read_at_s=read_at_s, queues=queues, workers=workers,
                            round_trips=self.client.round_trips - trips_before)

    def _discover(self) -> tuple[list[str], list[str]]:
        """Round trip 1: queue names and worker keys."""
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(self.layout.queues_set)
        pipe.smembers(self.layout.workers_set)
        queue_keys, worker_keys = (self._reply(key, reply, set()) for key, reply in zip(
            (self.layout.queues_set, self.layout.workers_set), pipe.execute(raise_on_error=False)))
        names, workers = set(), set()
        for key in queue_keys:
            name = self.layout.queue_name(as_name(key, NAME_MAX + len(self.layout.queue_key_prefix)) or "")
            if as_name(name) is None:
                self.problems.report(self.layout.queues_set, f"member {as_text(key, 80)!r} is not a usable queue "
                                     f"key (at most {NAME_MAX} characters of UTF-8 without NUL); skipped")
            else:
                names.add(name)
        for key in worker_keys:
            worker_key = as_name(key, NAME_MAX + len(self.layout.worker_key_prefix))
            if worker_key is None or as_name(self.layout.worker_name(worker_key)) is None:
                self.problems.report(self.layout.workers_set, f"member {as_text(key, 80)!r} is not a usable "
                                     "worker key; skipped")
            else:
                workers.add(worker_key)
        return sorted(names), sorted(workers)

    def _reply(self, key: str, reply: Any, default: Any) -> Any:
        """A pipeline reply; a failed command (e.g. WRONGTYPE) is reported for its key and gives `default`."""
        if isinstance(reply, Exception):
            self.problems.report(key, f"{type(reply).__name__}: {reply}")
            return default
        return default if reply is None else reply

    def _snapshot(self, queue_names: Sequence[str], worker_keys: Sequence[str],
                  cursors: Mapping[str, Cursor]):
        """Round trip 2: one atomic snapshot of counts, heads, registry tops and workers, with TIME (a plain
        pipeline when `atomic` is off: a Redis Cluster node refuses MULTI over keys of several slots)."""
        layout = self.layout
        pipe = self.client.pipeline(transaction=self.atomic)
        pipe.time()
        plans: dict[str, list[tuple[str, bool, float | None]]] = {}
        for name in queue_names:
            pipe.llen(layout.queue(name))
            for key in (layout.started(name), layout.scheduled(name), layout.deferred(name),
                        layout.failed(name), layout.finished(name)):
                pipe.zcard(key)
            pipe.lrange(layout.queue(name), 0, self.head_probe - 1)
            cursor = cursors.get(name) or Cursor()
            plans[name] = [(layout.finished(name), False, _finite(cursor.finished_score)),
                           (layout.failed(name), True, _finite(cursor.failed_score))]
            for key, _, score in plans[name]:
                if score is None:
                    pipe.zrevrangebyscore(key, "(+inf", "-inf", start=0, num=1, withscores=True)
                else:
                    pipe.zcount(key, f"({score!r}", "(+inf")
                    pipe.zrevrangebyscore(key, "(+inf", f"({score!r}", start=0, num=self._fetch_limit(),
                                          withscores=True)
        for key in worker_keys:
            pipe.hgetall(key)
            pipe.smembers(layout.worker_executions(layout.worker_name(key)))
        replies = iter(pipe.execute(raise_on_error=False))

        seconds, micros = _ok(next(replies), (0, 0))
        read_at_s = int(seconds) + int(micros) / 1e6
        counts: dict[str, dict[str, int | None]] = {}
        heads: dict[str, list[str]] = {}
        tops: dict[str, list[_RegistryTop]] = {}
        for name in queue_names:
            count_keys = (layout.queue(name), layout.started(name), layout.scheduled(name), layout.deferred(name),
                          layout.failed(name), layout.finished(name))
            counts[name] = {field: as_int(self._reply(key, next(replies), None))
                            for field, key in zip(_COUNTS, count_keys)}
            heads[name] = [job_id for job_id in (as_name(j) for j in self._reply(layout.queue(name), next(replies), []))
                           if job_id]
            tops[name] = []
            for key, failed_registry, score in plans[name]:
                if score is None:
                    entries, readable = self._entries(key, next(replies))
                    tops[name].append(_RegistryTop(failed_registry, None, 0, entries, 1, readable))
                else:
                    total = as_int(self._reply(key, next(replies), None))
                    entries, readable = self._entries(key, next(replies))
                    tops[name].append(_RegistryTop(failed_registry, score, total or 0, entries,
                                                   self._fetch_limit(), readable and total is not None))
        worker_replies = [(self._reply(key, next(replies), {}),
                           self._reply(layout.worker_executions(layout.worker_name(key)), next(replies), set()))
                          for key in worker_keys]
        return read_at_s, counts, heads, tops, worker_replies

    def _details(self, heads: Mapping[str, list[str]], tops: Mapping[str, list[_RegistryTop]]) -> _Details:
        """Round trip 3: enqueued_at of head jobs, times of sampled jobs, tracebacks of sampled failures."""
        layout = self.layout
        head_ids = sorted({job_id for ids in heads.values() for job_id in ids})
        sampled: dict[str, bool] = {}
        for registry_tops in tops.values():
            for top in registry_tops:
                if top.cursor is None:
                    continue
                for job_id, _ in top.entries:
                    sampled[job_id] = sampled.get(job_id, False) or top.failed
        if not head_ids and not sampled:
            return _Details({}, {}, {})
        fields_read = JOB_TIME_FIELDS + JOB_INFO_FIELDS
        failure_fields = fields_read + (("exc_info",) if self._raw_replies else ())
        pipe = self.client.pipeline(transaction=False)
        for job_id in head_ids:
            pipe.hget(layout.job(job_id), "enqueued_at")
        ordered = sorted(sampled.items())
        for job_id, failed in ordered:
            pipe.hmget(layout.job(job_id), failure_fields if failed else fields_read)
            if failed:
                pipe.xrevrange(layout.results(job_id), "+", "-", count=1)
        replies = iter(pipe.execute(raise_on_error=False))
        head_times = {job_id: parse_timestamp_s(_ok(next(replies), None)) for job_id in head_ids}
        job_times: dict[str, tuple[float | None, float | None, float | None] | None] = {}
        failure_texts: dict[str, str | None] = {}
        job_info: dict[str, tuple[str | None, str | None, float | None]] = {}
        for job_id, failed in ordered:
            fields = _ok(next(replies), None) or []
            job_times[job_id] = _job_times(fields)
            job_info[job_id] = parse_job_info(fields[len(JOB_TIME_FIELDS):])
            times = job_times[job_id]
            if times is not None and any(t is None and raw not in (None, b"", "")
                                         for t, raw in zip(times, fields[1:4])):
                self.problems.report(layout.job(job_id), "an enqueued_at, started_at or ended_at time is not "
                                     "usable; that job's wait or run time is unavailable")
            if failed:
                latest = _ok(next(replies), None) or []
                exc_info = fields[len(fields_read)] if len(fields) > len(fields_read) else None
                failure_texts[job_id] = _failure_text(latest, exc_info)
        return _Details(head_times, job_times, failure_texts, job_info)

    def _queue_reading(self, name: str, counts: Mapping[str, int], head_ids: Sequence[str],
                       registry_tops: Sequence[_RegistryTop], details: _Details,
                       read_at_s: float) -> QueueReading:
        """Counts, oldest waiting job and the registry progress of one queue."""
        head_times = [details.head_times.get(job_id) for job_id in head_ids]
        oldest_s = next((at_s for at_s in head_times if at_s is not None), None)
        unavailable = {COUNT_FIELDS[field] for field, count in counts.items() if count is None}
        if not all(top.readable for top in registry_tops):
            unavailable |= FLOW_FIELDS
        finished_top, failed_top = registry_tops
        new_finished, finished_cursor, finished_ids = self._advance(finished_top, details, read_at_s)
        new_failed, failed_cursor, failed_ids = self._advance(failed_top, details, read_at_s)
        samples = [job for job in (details.sample(j, failed=False) for j in finished_ids) if job]
        failed_samples = [job for job in (details.sample(j, failed=True) for j in failed_ids) if job]
        configured = configured_timeout_s(samples + failed_samples)
        if configured is not None:
            self.timeouts_s[name] = configured
        timeouts = sum(1 for job in failed_samples if job.timed_out)
        if failed_samples and new_failed > len(failed_samples):
            timeouts = round(timeouts * new_failed / len(failed_samples))
        return QueueReading(
            queue_name=name, library=LIBRARY, oldest_enqueued_at_s=oldest_s,
            cursor=Cursor(finished_score=finished_cursor, failed_score=failed_cursor),
            new_finished=new_finished, new_failed=new_failed, new_timeouts=timeouts,
            sampled_jobs=samples + failed_samples, unavailable=frozenset(unavailable),
            details={"timeout_s": self.timeouts_s[name]} if name in self.timeouts_s else {},
            **{field: count or 0 for field, count in counts.items()},
        )

    def _advance(self, top: _RegistryTop, details: _Details,
                 read_at_s: float) -> tuple[int, float, list[str]]:
        """New entries counted, the new cursor and the ids to sample; a still-open newest score waits."""
        if not top.readable:  # counted when the registry can be read again
            return 0, top.cursor if top.cursor is not None else EMPTY_REGISTRY_CURSOR, []
        if top.cursor is None:
            return 0, (top.entries[0][1] if top.entries else EMPTY_REGISTRY_CURSOR), []
        if not top.entries:
            return 0, top.cursor, []
        newest = top.entries[0][1]
        at_newest = [job_id for job_id, score in top.entries if score == newest]
        below = [(job_id, score) for job_id, score in top.entries if score != newest]
        saturated = not below and len(top.entries) >= top.limit
        if not saturated and self._still_open(at_newest, details, read_at_s):
            cursor = below[0][1] if below else top.cursor
            sampled = [job_id for job_id, _ in below][:self.sample_jobs]
            return top.total_above - len(at_newest), cursor, sampled
        return top.total_above, newest, [job_id for job_id, _ in top.entries][:self.sample_jobs]

    def _still_open(self, job_ids: Sequence[str], details: _Details, read_at_s: float) -> bool:
        """Whether jobs sharing the newest score ended so recently that more may still get that score."""
        if self.settle_s <= 0:
            return False
        ended = [s for s in (details.ended_at_s(j) for j in job_ids) if s is not None]
        return bool(ended) and max(ended) >= read_at_s - self.settle_s

    def _worker_reading(self, key: str, hash_reply: Mapping[Any, Any], executions: Any,
                        read_at_s: float) -> WorkerReading | None:
        """One registered worker (see collector.rq_workers.worker_reading)."""
        return worker_reading(WorkerSource(self.layout, self.problems, self.worker_stale_after_s, self.hostname,
                                           self.pid_alive), key, hash_reply, executions, read_at_s)

    def _fetch_limit(self) -> int:
        return max(1, self.sample_jobs)

    def _entries(self, key: str, reply: Any) -> tuple[list[tuple[str, float]], bool]:
        """(job id, score) pairs of a ZREVRANGEBYSCORE WITHSCORES reply with finite scores, and whether it was
        read (False for an error reply such as WRONGTYPE)."""
        if isinstance(reply, Exception):
            self._reply(key, reply, None)
            return [], False
        pairs = [(as_name(member), finite_score(score)) for member, score in reply or []]
        usable = [(job_id, score) for job_id, score in pairs if job_id is not None and score is not None]
        if len(usable) < len(pairs):
            self.problems.report(key, f"{len(pairs) - len(usable)} entries with an unusable id or score skipped")
        return usable, True


def _ok(reply: Any, default: Any) -> Any:
    """A pipeline reply, or the default when the command failed (e.g. a key of the wrong type)."""
    return default if isinstance(reply, Exception) or reply is None else reply


def _finite(score: float | None) -> float | None:
    """A usable cursor score (None for a missing or non-finite one)."""
    if score is None or not math.isfinite(score):
        return None
    return float(score)


def _job_times(fields: Sequence[Any]) -> tuple[float | None, float | None, float | None] | None:
    """(enqueued_at, started_at, ended_at) of an HMGET reply, None when the job hash is gone."""
    if len(fields) < 4 or all(value is None for value in fields[:4]):
        return None
    return parse_timestamp_s(fields[1]), parse_timestamp_s(fields[2]), parse_timestamp_s(fields[3])


def _failure_text(latest: Sequence[Any], exc_info: Any) -> str | None:
    """The traceback of a failed job: its newest result's exc_string, else the job hash's exc_info."""
    for _, payload in latest[:1]:
        fields = {text(k): v for k, v in (payload or {}).items()}
        decoded = decode_result_exc_string(fields.get("exc_string"))
        if decoded:
            return decoded[-FAILURE_TEXT_MAX:]
    decoded = decode_job_exc_info(exc_info)
    return decoded[-FAILURE_TEXT_MAX:] if decoded else decoded
