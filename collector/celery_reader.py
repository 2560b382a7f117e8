"""The Celery backend (Redis broker): queue depths from kombu's lists, timings and workers from Celery's events.

Round trips per cycle, whatever the number of queues, messages or workers:
1. bindings: SMEMBERS of every known `_kombu.binding.<exchange>` table (skipped while none is known);
2. snapshot, one MULTI/EXEC: TIME; LLEN and LINDEX -1 of every priority bucket of every queue; HLEN of `unacked`
   and HRANDFIELD `unacked` <unacked_sample> WITHVALUES (all entries when there are no more than that);
3. only with a result client and finished tasks of unknown queue: one MGET of their `celery-task-meta-<id>`.
Discovery: the binding table names need a SCAN MATCH `_kombu.binding.*` (TYPE set), which walks the whole keyspace
(ceil(keys / scan_count) round trips, O(keys) work on the server); it runs on the first cycle, every
`discover_every` cycles (0: never again) and on the cycle after a new worker was heard from or a task was placed
in a queue that was not read. Queues are the configured ones, the bound ones (event and pidbox tables dropped)
and those named by task-sent events.

Queue of an ended task, first that applies: its task-sent event; its `unacked` entry (exchange and routing key,
resolved through the bindings) seen by a read; its result metadata's `queue` (`result_extended`, with a result
client); the configured `routes` (task name -> queue); the one queue its name was seen on; the one queue there is.
Only a queue known to exist (configured, bound, named by a task-sent event or a route) is ever reported: an ended
task whose queue cannot be told is counted in no queue, added to `unattributed` and logged (the first one).

Active: with task events, tasks started and not ended on workers not known to be gone; without them, the `unacked`
messages that are not waiting for an ETA (prefetched by workers, plus running ones under the solo pool or
`acks_late`). Scheduled: `unacked` messages whose ETA is in the future (Celery holds ETA/countdown tasks in the
worker). Both are scaled from the sample when `unacked` holds more than `unacked_sample` entries.
Celery keeps no per-queue finished or failed store, so `failed` and `completed` are always unavailable.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import redis

from collector.celery_events import (
    DEFAULT_FORGET_WORKER_AFTER_S,
    DEFAULT_HEARTBEAT_SLACK_S,
    EventState,
    TaskOutcome,
    WorkerState,
)
from collector.celery_layout import (
    DEFAULT_PRIORITY_STEPS,
    DEFAULT_SEP,
    RESULT_KEY_PREFIX,
    Bindings,
    CeleryLayout,
    Unacked,
    parse_head,
    parse_unacked,
    text,
)
from collector.celery_listener import EventListener
from core.model import Cursor, QueueReading, RedisReading, WorkerReading
from core.problems import ProblemLog
from collector.roundtrips import counting
from core.values import as_int, as_name, parse_json

log = logging.getLogger(__name__)

LIBRARY = "celery"
DEFAULT_DISCOVER_EVERY = 30
DEFAULT_SCAN_COUNT = 1000
DEFAULT_UNACKED_SAMPLE = 500
DEFAULT_RESULT_LOOKUPS = 500
DEFAULT_SAMPLE_JOBS = 1000
ALWAYS_UNAVAILABLE = frozenset({"failed", "completed"})
TIMING_FIELDS = frozenset({"jobsPerMinute", "errorRate", "timeoutRate", "avgProcessingTimeMs",
                           "p50ProcessingTimeMs", "p95ProcessingTimeMs", "p99ProcessingTimeMs"})
OLDEST_FIELD = "oldestWaitingMs"


class CeleryReader:
    """Reads Celery's state from one Redis broker without writing to it; `start()`/`close()` run the listener."""

    library = LIBRARY

    def __init__(self, client: redis.Redis, *, queues: Sequence[str] = (), global_keyprefix: str = "",
                 sep: str = DEFAULT_SEP, priority_steps: Sequence[int] = DEFAULT_PRIORITY_STEPS,
                 fanout_prefix: str | bool = True, routes: Mapping[str, str] | None = None,
                 discover_every: int = DEFAULT_DISCOVER_EVERY,
                 scan_count: int = DEFAULT_SCAN_COUNT, unacked_sample: int = DEFAULT_UNACKED_SAMPLE,
                 result_client: redis.Redis | None = None, result_key_prefix: str = RESULT_KEY_PREFIX,
                 result_lookups: int = DEFAULT_RESULT_LOOKUPS, sample_jobs: int = DEFAULT_SAMPLE_JOBS,
                 heartbeat_slack_s: float = DEFAULT_HEARTBEAT_SLACK_S,
                 forget_worker_after_s: float = DEFAULT_FORGET_WORKER_AFTER_S, listen: bool = True,
                 clock: Callable[[], float] = time.time, problems: ProblemLog | None = None) -> None:
        self.client = counting(client)
        db = int(client.connection_pool.connection_kwargs.get("db") or 0)
        self.layout = CeleryLayout(global_keyprefix, sep, tuple(priority_steps), fanout_prefix, db)
        self.queues = tuple(queues)
        self.routes = dict(routes or {})
        self.discover_every = discover_every
        self.scan_count = max(10, scan_count)
        self.unacked_sample = max(0, unacked_sample)
        self.result_client = counting(result_client) if result_client is not None else None
        self.result_key_prefix = result_key_prefix
        self.result_lookups = max(0, result_lookups)
        self.sample_jobs = max(0, sample_jobs)
        self.clock = clock
        self.problems = problems or ProblemLog()
        self.state = EventState(heartbeat_slack_s=heartbeat_slack_s, forget_worker_after_s=forget_worker_after_s)
        self.listener = (EventListener(self.client, self.layout.event_channel_pattern, self.state, clock=clock,
                                       problems=self.problems) if listen else None)
        self._closed = False
        self._cycles = 0
        self._discover_due = True
        self._binding_keys: list[str] = []
        self._workers_seen: set[str] = set()
        self.unattributed = 0
        """Ended tasks counted in no queue because their queue could not be told (since the reader started)."""

    def start(self) -> None:
        """Start the event subscriber thread (read() starts it too)."""
        if self.listener is not None and not self._closed:
            self.listener.start()

    def close(self) -> None:
        """Stop the event subscriber thread; later reads report no event-based figures."""
        self._closed = True
        if self.listener is not None:
            self.listener.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read(self, cursors: Mapping[str, Cursor], *, unseen: Cursor = Cursor()) -> RedisReading:
        """One cycle: queue depths, tasks ended since the previous read, and workers heard from.

        Events carry no history, so `cursors` and `unseen` change nothing: every task that ended since the previous
        read (or since the listener started) is counted once.
        """
        self.start()
        trips_before = self._round_trips()
        if self._discover_due or (self.discover_every > 0 and self._cycles % self.discover_every == 0):
            self._discover()
        self._cycles += 1
        bindings = self._bindings()
        names = sorted(set(self.queues) | bindings.queues | self.state.sent_queues())
        known = set(names) | set(self.routes.values())
        read_at_s, sizes, heads, unacked_total, unacked = self._snapshot(names)
        now_s = self.clock()
        learned = {entry.task_id: (entry.task_name, queue) for entry, queue in
                   ((entry, _known(bindings.queue_for(entry.exchange, entry.routing_key, names), known))
                    for entry in unacked) if entry.task_id and queue}
        self.state.remember_queues(learned)
        self.state.settle_lost(now_s)
        outcomes = self.state.drain()
        from_results = self._result_queues([o for o in outcomes if not o.queue and o.task_id not in learned],
                                           bindings, names, known)
        resolved = {**{k: q for k, (_, q) in learned.items()}, **from_results}
        only_queue = names[0] if len(names) == 1 and names[0] in bindings.queues else None

        def queue_of(task: TaskOutcome) -> str | None:
            return _known(task.queue or resolved.get(task.task_id) or self.routes.get(task.name or "")
                          or self.state.route_of(task.name) or only_queue, known)

        events_live = self.state.events_live(now_s)
        readings = {name: reading for name, reading in (
            (name, self.problems.guard(self.layout.global_keyprefix + name, "queue",
                                       lambda name=name: self._queue_reading(name, sizes[name], heads[name])))
            for name in names) if reading is not None}
        self._count_outcomes(readings, outcomes, queue_of)
        in_flight = self.state.in_flight(now_s)
        if events_live:
            for task in in_flight:
                queue = queue_of(task)
                if queue:
                    self._reading(readings, queue).active += 1
        self._count_unacked(readings, bindings, known, unacked, unacked_total, read_at_s, events_live)
        unavailable = set(ALWAYS_UNAVAILABLE)
        if not events_live:
            unavailable |= TIMING_FIELDS
        running_on = {task.hostname: task.task_id for task in in_flight}
        workers = [reading for reading in (
            self.problems.guard(f"celery worker {worker.nodename}", "worker", lambda worker=worker, alive=alive:
                                self._worker_reading(worker, alive, running_on.get(worker.nodename)))
            for worker, alive in self.state.workers(now_s)) if reading is not None]
        new_workers = {worker.name for worker in workers} - self._workers_seen
        self._workers_seen |= new_workers
        self._discover_due = bool(new_workers) or not set(readings) <= set(names)
        # Workers are known from their events; one whose queues are unknown could be consuming any queue.
        workers_known = events_live and all(worker.queues for worker in workers if worker.alive)
        return RedisReading(read_at_s=read_at_s, queues=[readings[k] for k in sorted(readings)], workers=workers,
                            round_trips=self._round_trips() - trips_before, unavailable=frozenset(unavailable),
                            workers_known=workers_known)

    def _count_outcomes(self, readings: dict[str, QueueReading], outcomes: Sequence[TaskOutcome],
                        queue_of: Callable[[TaskOutcome], str | None]) -> None:
        """Ended tasks into their queues' counts and samples; their workers learn the queue."""
        for outcome in outcomes:
            name = queue_of(outcome)
            if name is None:
                self._unattributed(outcome)
                continue
            queue = self._reading(readings, name)
            queue.new_failed += outcome.failed
            queue.new_finished += not outcome.failed
            queue.new_timeouts += outcome.timed_out
            if len(queue.sampled_jobs) < self.sample_jobs:
                queue.sampled_jobs.append(outcome.finished_job())
            self.state.note_worker_queues(outcome.hostname, {queue.queue_name})

    def _unattributed(self, outcome: TaskOutcome) -> None:
        """An ended task of unknown queue: counted apart, the first one logged."""
        self.unattributed += 1
        if self.unattributed == 1:
            kind = "lost" if outcome.lost else "timed out" if outcome.timed_out else (
                "failed" if outcome.failed else "succeeded")
            log.warning("celery task %s (%s) %s in a queue that cannot be told; it is counted in no queue, nor are "
                        "later ones (enable task_send_sent_event on producers, or result_extended with a result "
                        "client, or pass routes)", outcome.task_id, outcome.name or "unknown name", kind)

    def _round_trips(self) -> int:
        total = self.client.round_trips
        if self.result_client is not None and self.result_client is not self.client:
            total += self.result_client.round_trips
        return total

    def _discover(self) -> None:
        """SCAN for binding tables (several round trips on a large keyspace)."""
        self._discover_due = False
        found: set[str] = set()
        cursor = 0
        while True:
            cursor, keys = self.client.scan(cursor, match=self.layout.binding_match, count=self.scan_count,
                                            _type="set")
            found.update(text(key) or "" for key in keys)
            if int(cursor) == 0:
                break
        self._binding_keys = sorted(key for key in found if self.layout.exchange_of(key))

    def _bindings(self) -> Bindings:
        """Round trip 1: the members of every known binding table."""
        if not self._binding_keys:
            return Bindings({})
        pipe = self.client.pipeline(transaction=False)
        for key in self._binding_keys:
            pipe.smembers(key)
        replies = pipe.execute(raise_on_error=False)
        tables = {self.layout.exchange_of(key) or "": _ok(reply, set())
                  for key, reply in zip(self._binding_keys, replies)}
        return Bindings.from_tables(tables, self.layout.sep)

    def _snapshot(self, names: Sequence[str]):
        """Round trip 2: one atomic snapshot of bucket lengths, bucket tails and unacked messages, with TIME."""
        pipe = self.client.pipeline(transaction=True)
        pipe.time()
        for name in names:
            for key in self.layout.bucket_keys(name):
                pipe.llen(key)
                pipe.lindex(key, -1)
        pipe.hlen(self.layout.unacked)
        if self.unacked_sample:
            pipe.hrandfield(self.layout.unacked, self.unacked_sample, withvalues=True)
        replies = iter(pipe.execute(raise_on_error=False))
        seconds, micros = _ok(next(replies), (0, 0))
        read_at_s = int(seconds) + int(micros) / 1e6
        sizes: dict[str, list[int | None]] = {}
        heads: dict[str, list[Any]] = {}
        for name in names:
            sizes[name], heads[name] = [], []
            for key in self.layout.bucket_keys(name):
                sizes[name].append(as_int(self._reply(key, next(replies), None)))
                heads[name].append(self._reply(key, next(replies), None))
        unacked_total = as_int(self._reply(self.layout.unacked, next(replies), 0)) or 0
        values = _hash_values(self._reply(self.layout.unacked, next(replies), [])) if self.unacked_sample else []
        unacked = [entry for entry in (parse_unacked(value) for value in values) if entry is not None]
        if len(unacked) < len(values):
            self.problems.report(self.layout.unacked, f"{len(values) - len(unacked)} of {len(values)} sampled "
                                 "entries are not [message, exchange, routing_key] JSON; they are not counted")
        return read_at_s, sizes, heads, unacked_total, unacked

    def _reply(self, key: str, reply: Any, default: Any) -> Any:
        """A pipeline reply; a failed command (e.g. WRONGTYPE) is reported for its key and gives `default`."""
        if isinstance(reply, Exception):
            self.problems.report(key, f"{type(reply).__name__}: {reply}")
            return default
        return default if reply is None else reply

    def _queue_reading(self, name: str, sizes: Sequence[int | None], heads: Sequence[Any]) -> QueueReading:
        """A queue's depth (all priority buckets) and the publish time of its oldest waiting message; a bucket
        that cannot be read makes the depth unavailable."""
        times: list[float | None] = []
        unavailable = {"waiting", OLDEST_FIELD} if None in sizes else set()
        for key, size, raw in zip(self.layout.bucket_keys(name), sizes, heads):
            head = parse_head(raw) if size else None
            if head is not None and head.malformed:
                self.problems.report(key, "the oldest message is not a kombu JSON envelope with a headers object; "
                                     "the queue's oldest waiting age is unavailable")
            if head is not None:
                times.append(head.published_at_s if head.published_at_s is not None
                             else self.state.sent_at(head.task_id))
        oldest_s = min(times) if times and None not in times else None
        if sum(size or 0 for size in sizes) and oldest_s is None:
            unavailable.add(OLDEST_FIELD)
        return QueueReading(queue_name=name, library=LIBRARY, waiting=sum(size or 0 for size in sizes), active=0,
                            scheduled=0, deferred=0, failed=0, completed=0, oldest_enqueued_at_s=oldest_s,
                            cursor=Cursor(), unavailable=frozenset(unavailable))

    @staticmethod
    def _reading(readings: dict[str, QueueReading], name: str) -> QueueReading:
        """The reading of a queue, added empty when it was not among the read queues."""
        if name not in readings:
            readings[name] = QueueReading(queue_name=name, library=LIBRARY, waiting=0, active=0, scheduled=0,
                                          deferred=0, failed=0, completed=0, oldest_enqueued_at_s=None,
                                          cursor=Cursor())
        return readings[name]

    def _count_unacked(self, readings: dict[str, QueueReading], bindings: Bindings, known: set[str],
                       unacked: Sequence[Unacked], unacked_total: int, read_at_s: float, events_live: bool) -> None:
        """Scheduled (future ETA) and, without task events, active counts from the unacked messages."""
        scale = unacked_total / len(unacked) if unacked and unacked_total > len(unacked) else 1.0
        scheduled: dict[str, int] = {}
        reserved: dict[str, int] = {}
        for entry in unacked:
            queue = _known(bindings.queue_for(entry.exchange, entry.routing_key, known), known)
            if queue is None:
                continue
            counts = scheduled if entry.eta_s is not None and entry.eta_s > read_at_s else reserved
            counts[queue] = counts.get(queue, 0) + 1
        for queue, count in scheduled.items():
            self._reading(readings, queue).scheduled = round(count * scale)
        if not events_live:
            for queue, count in reserved.items():
                self._reading(readings, queue).active = round(count * scale)

    def _result_queues(self, outcomes: Sequence[TaskOutcome], bindings: Bindings, names: Sequence[str],
                       known: set[str]) -> dict[str, str]:
        """Round trip 3 (optional): queues of finished tasks from their extended result metadata."""
        ids = sorted({o.task_id for o in outcomes})[:self.result_lookups]
        if self.result_client is None or not ids:
            return {}
        try:
            replies = self.result_client.mget([self.result_key_prefix + task_id for task_id in ids])
        except redis.RedisError as exc:
            log.warning("celery result backend lookup failed, the queues of ended tasks come from routes: %s", exc)
            return {}
        found: dict[str, str] = {}
        learned: dict[str, tuple[str | None, str]] = {}
        for task_id, raw in zip(ids, replies):
            meta = parse_json(raw)
            if not isinstance(meta, dict) or not as_name(meta.get("queue")):
                continue
            queue = _known(bindings.queue_for(None, as_name(meta["queue"]), names), known)
            if queue:
                found[task_id] = queue
                learned[task_id] = (as_name(meta.get("name")), queue)
        self.state.remember_queues(learned)
        return found

    @staticmethod
    def _worker_reading(worker: WorkerState, alive: bool, current_task_id: str | None) -> WorkerReading:
        """A worker from its heartbeats; failed_jobs counts task-failed events seen since the listener started."""
        if worker.offline:
            state = "offline"
        elif not alive:
            state = "stale"
        else:
            state = "busy" if worker.active else "idle"
        failed = worker.failed_seen
        return WorkerReading(name=worker.nodename, library=LIBRARY, queues=sorted(worker.queues), pid=worker.pid,
                             hostname=worker.hostname, state=state, alive=alive,
                             successful_jobs=max(0, worker.processed - worker.active - failed), failed_jobs=failed,
                             birth_at_s=worker.online_at_s, last_heartbeat_at_s=worker.heartbeat_at_s,
                             current_job_id=current_task_id if alive else None)


def _known(queue: str | None, known: set[str]) -> str | None:
    """The queue when it is known to exist, else None."""
    return queue if queue in known else None


def _ok(reply: Any, default: Any) -> Any:
    """A pipeline reply, or the default when the command failed (missing or wrong-typed key)."""
    return default if reply is None or isinstance(reply, Exception) else reply


def _hash_values(reply: Any) -> list[Any]:
    """The values of an HRANDFIELD ... WITHVALUES reply (flat RESP2 list or RESP3 pairs)."""
    items = list(reply or [])
    if items and isinstance(items[0], (list, tuple)):
        return [pair[1] for pair in items if len(pair) == 2]
    return items[1::2]

