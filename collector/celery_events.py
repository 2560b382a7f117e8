"""Celery events over Redis pub/sub: the state folded from them between reads (no I/O).

What the events carry:
- `task-sent` (producers with `task_send_sent_event`): uuid, name, queue, exchange, routing_key, timestamp.
- `task-received` / `task-started` (workers with `-E`): uuid, hostname, timestamp; no queue or routing data.
- `task-succeeded`: runtime (seconds, measured in the pool); `task-failed`: exception, traceback. A hard time
  limit in the prefork pool sends two task-failed events for one task, with exception `ExceptionWithTraceback()`
  and a traceback ending in `billiard.exceptions.TimeLimitExceeded`; each task is counted once. A pool child that
  dies (kill -9, OOM) gives one task-failed from the main process, its traceback ending in `WorkerLostError`.
- `worker-heartbeat` (every `freq` = 2 s, even without `-E`): hostname, pid, freq, active, processed (tasks
  accepted since the worker started), loadavg; `worker-online` / `worker-offline` on start and clean stop.
Worker liveness is judged by the collector's clock at receipt: a worker not heard from for 2 x freq + slack is
stale. Tasks running on a worker that went offline, went stale or came back as a new process (worker-online, or a
new pid) are lost: each ends once as a failure with an unknown end time, and its later events are ignored.
A heartbeat reporting fewer active tasks than were started only stops counting the older ones as running (their
end may still be on its way, batched behind the heartbeat); what is known of them, the queue above all, is kept.
Task events count as enabled once a worker task event has been seen and no live worker's `processed` grew
without task events from it (a worker started without `-E` next to ones with it turns them off again).
The subscriber thread is collector/celery_listener.py; the opt-in publish-time header hook for producers is
collector/celery_publish.py.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from collector.celery_layout import is_timeout
from core.model import FinishedJob, JobFailure
from core.values import PID_MAX, as_float, as_int, as_name, as_text, duration_s, epoch_s

FREQ_MIN_S, FREQ_MAX_S = 0.1, 3600.0
LOADAVG_MAX = 1e6

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SLACK_S = 3.0
DEFAULT_FREQ_S = 2.0
DEFAULT_MAX_TASKS = 100_000
DEFAULT_MAX_OUTCOMES = 100_000
DEFAULT_FORGET_WORKER_AFTER_S = 3600.0
ENDED_MEMORY = 10_000
FAILURE_TEXT_MAX = 20_000
"""Characters of a failure's exception and traceback kept."""
WORKER_TASK_EVENTS = frozenset({"task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
                                "task-rejected", "task-revoked"})


@dataclass
class _Task:
    """What the events told about one task so far."""

    name: str | None = None
    queue: str | None = None
    sent_at_s: float | None = None
    started_at_s: float | None = None
    hostname: str | None = None
    pid: int | None = None  # the worker main process that started it


@dataclass(frozen=True)
class TaskOutcome:
    """A task that succeeded, failed or was lost with its worker (times are the sending hosts' epoch seconds)."""

    task_id: str
    name: str | None
    queue: str | None
    hostname: str | None
    failed: bool
    timed_out: bool
    sent_at_s: float | None
    started_at_s: float | None
    ended_at_s: float | None
    lost: bool = False
    exception: str | None = None  # task-failed's `exception` (repr of the exception) and `traceback`
    traceback: str | None = None

    def finished_job(self) -> FinishedJob:
        failure = JobFailure(name=self.name, worker=self.hostname, error_text=self.traceback,
                             reason=self.exception) if self.failed and not self.lost else None
        return FinishedJob(job_id=self.task_id, failed=self.failed, timed_out=self.timed_out,
                           enqueued_at_s=self.sent_at_s, started_at_s=self.started_at_s, ended_at_s=self.ended_at_s,
                           failure=failure)


@dataclass
class WorkerState:
    """One worker as its heartbeats describe it; `seen_at_s` and `*_grew_at_s` are on the collector's clock."""

    nodename: str
    pid: int | None = None
    freq_s: float = DEFAULT_FREQ_S
    active: int = 0
    processed: int = 0
    loadavg: tuple[float, ...] = ()
    online_at_s: float | None = None
    heartbeat_at_s: float | None = None
    seen_at_s: float = 0.0
    offline: bool = False
    failed_seen: int = 0
    processed_grew_at_s: float | None = None
    task_event_at_s: float | None = None
    queues: set[str] = field(default_factory=set)

    @property
    def hostname(self) -> str:
        return self.nodename.split("@", 1)[-1]


class EventState:
    """Aggregates events between reads; every method is thread-safe."""

    def __init__(self, *, heartbeat_slack_s: float = DEFAULT_HEARTBEAT_SLACK_S, max_tasks: int = DEFAULT_MAX_TASKS,
                 max_outcomes: int = DEFAULT_MAX_OUTCOMES,
                 forget_worker_after_s: float = DEFAULT_FORGET_WORKER_AFTER_S) -> None:
        self.heartbeat_slack_s = heartbeat_slack_s
        self.max_tasks = max_tasks
        self.max_outcomes = max_outcomes
        self.forget_worker_after_s = forget_worker_after_s
        self.dropped_outcomes = 0
        self.task_events_seen = 0
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._running: dict[str, dict[str, None]] = {}  # worker nodename -> started task ids
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._outcomes: list[TaskOutcome] = []
        self._workers: dict[str, WorkerState] = {}
        self._routes: dict[str, set[str]] = {}
        self._sent_queues: set[str] = set()

    def apply(self, event: Mapping[str, Any], now_s: float) -> None:
        """Fold one event into the state (`now_s` is the collector's clock at receipt)."""
        kind = str(event.get("type"))
        with self._lock:
            if kind.startswith("worker-"):
                self._apply_worker(kind, event, now_s)
            elif kind.startswith("task-"):
                self._apply_task(kind, event, now_s)

    def _apply_worker(self, kind: str, event: Mapping[str, Any], now_s: float) -> None:
        nodename = as_name(event.get("hostname"))
        if not nodename:
            raise ValueError("worker event without a usable hostname")
        worker = self._workers.get(nodename) or WorkerState(nodename)
        self._workers[nodename] = worker
        pid, processed = as_int(event.get("pid"), low=1, high=PID_MAX), as_int(event.get("processed"))
        known_pid = worker.pid
        if processed is not None:
            if worker.pid == pid and processed > worker.processed and worker.heartbeat_at_s is not None:
                worker.processed_grew_at_s = now_s
            worker.processed = processed
        worker.pid = pid if pid is not None else worker.pid
        worker.freq_s = as_float(event.get("freq"), low=FREQ_MIN_S, high=FREQ_MAX_S) or worker.freq_s
        worker.active = as_int(event.get("active")) or 0
        loadavg = event.get("loadavg")
        worker.loadavg = tuple(v for v in (as_float(x, low=0.0, high=LOADAVG_MAX) for x in
                                           (loadavg if isinstance(loadavg, list) else ())[:3]) if v is not None)
        if kind == "worker-offline":
            self._lose(nodename, lambda task: True)
        elif pid is not None and (kind == "worker-online" or (known_pid is not None and pid != known_pid)):
            self._lose(nodename, lambda task: task.pid != pid)
        worker.seen_at_s = now_s
        worker.offline = kind == "worker-offline"
        timestamp_s = epoch_s(event.get("timestamp"))
        if kind == "worker-online":
            worker.online_at_s = timestamp_s
        worker.heartbeat_at_s = timestamp_s if timestamp_s is not None else worker.heartbeat_at_s
        if timestamp_s is not None:
            self._settle_in_flight(nodename, worker.active, timestamp_s - worker.freq_s)

    def _settle_in_flight(self, nodename: str, active: int, before_s: float) -> None:
        """Stop counting as running the older starts beyond the `active` tasks a heartbeat reports (kept otherwise)."""
        running = self._running.get(nodename, {})
        started = sorted((self._tasks[task_id].started_at_s or 0.0, task_id) for task_id in running)
        older = [task_id for started_at_s, task_id in started if started_at_s < before_s]
        for task_id in older[:max(0, len(started) - active)]:
            del running[task_id]

    def _lose(self, nodename: str, which: Callable[[_Task], bool]) -> None:
        """End the chosen running tasks of a worker as lost with it (failed, end time unknown)."""
        lost = [task_id for task_id in self._running.get(nodename, {}) if which(self._tasks[task_id])]
        for task_id in lost:
            task = self._tasks[task_id]
            self._end(task_id, TaskOutcome(task_id, task.name, task.queue, nodename, True, False, task.sent_at_s,
                                           task.started_at_s, None, lost=True))
        if lost:
            log.warning("celery worker %s went away with %d running task(s): counted as failed (lost)",
                        nodename, len(lost))

    def settle_lost(self, now_s: float) -> None:
        """End as lost the tasks running on workers that stopped heartbeating."""
        with self._lock:
            for nodename in list(self._running):
                worker = self._workers.get(nodename)
                if worker is not None and worker.heartbeat_at_s is not None and not self._alive(worker, now_s):
                    self._lose(nodename, lambda task: True)

    def _apply_task(self, kind: str, event: Mapping[str, Any], now_s: float) -> None:
        task_id = as_name(event.get("uuid"))
        if not task_id:
            raise ValueError("task event without a usable uuid")
        timestamp_s = epoch_s(event.get("timestamp"))
        nodename = as_name(event.get("hostname"))
        if kind in WORKER_TASK_EVENTS and nodename:
            self.task_events_seen += 1
            worker = self._workers.get(nodename) or WorkerState(nodename, seen_at_s=now_s)
            self._workers[nodename] = worker
            worker.task_event_at_s = now_s
        if task_id in self._ended and kind != "task-sent":
            return
        task = self._task(task_id)
        task.name = as_name(event.get("name")) or task.name
        if kind == "task-sent":
            self._ended.pop(task_id, None)
            task.sent_at_s = timestamp_s
            task.queue = as_name(event.get("queue")) or task.queue
            if task.queue:
                self._sent_queues.add(task.queue)
                self._learn_route(task.name, task.queue)
        elif kind == "task-started":
            self._stop_running(task_id, task)
            task.started_at_s, task.hostname = timestamp_s if timestamp_s is not None else now_s, nodename
            task.pid = as_int(event.get("pid"), low=1, high=PID_MAX)
            if nodename:
                self._running.setdefault(nodename, {})[task_id] = None
        elif kind == "task-received":
            task.hostname = nodename
        elif kind == "task-retried":
            self._stop_running(task_id, task)
        elif kind in ("task-revoked", "task-rejected"):
            self._forget(task_id)
        elif kind in ("task-succeeded", "task-failed"):
            self._finish(task_id, task, kind == "task-failed", event, timestamp_s, nodename)

    def _finish(self, task_id: str, task: _Task, failed: bool, event: Mapping[str, Any], ended_at_s: float | None,
                nodename: str | None) -> None:
        started_at_s = task.started_at_s
        runtime_s = duration_s(event.get("runtime"))
        if runtime_s is not None and ended_at_s is not None:
            started_at_s = ended_at_s - runtime_s
        timed_out = failed and is_timeout(event.get("exception"), event.get("traceback"))
        if failed and nodename in self._workers:
            self._workers[nodename].failed_seen += 1
        exception = as_text(event.get("exception"), FAILURE_TEXT_MAX) if failed else None
        traceback = as_text(event.get("traceback"), FAILURE_TEXT_MAX) if failed else None
        self._end(task_id, TaskOutcome(task_id, task.name, task.queue, nodename or task.hostname, failed, timed_out,
                                       task.sent_at_s, started_at_s, ended_at_s, exception=exception,
                                       traceback=traceback))

    def _end(self, task_id: str, outcome: TaskOutcome) -> None:
        """Record an outcome; the task is remembered as ended, so its later events are ignored."""
        self._forget(task_id)
        self._ended[task_id] = None
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
        self._outcomes.append(outcome)
        if len(self._outcomes) > self.max_outcomes:
            del self._outcomes[0]
            self.dropped_outcomes += 1

    def _task(self, task_id: str) -> _Task:
        task = self._tasks.get(task_id)
        if task is None:
            task = self._tasks[task_id] = _Task()
            while len(self._tasks) > self.max_tasks:
                self._forget(next(iter(self._tasks)))
        return task

    def _stop_running(self, task_id: str, task: _Task) -> None:
        if task.hostname in self._running:
            self._running[task.hostname].pop(task_id, None)
        task.started_at_s = None

    def _forget(self, task_id: str) -> None:
        task = self._tasks.pop(task_id, None)
        if task is not None:
            self._stop_running(task_id, task)

    def _learn_route(self, name: str | None, queue: str) -> None:
        if name and (name in self._routes or len(self._routes) < self.max_tasks):
            self._routes.setdefault(name, set()).add(queue)

    def remember_queues(self, queue_by_task: Mapping[str, tuple[str | None, str]]) -> None:
        """Queues learned elsewhere (unacked messages, result metadata): task id -> (task name, queue)."""
        with self._lock:
            for task_id, (name, queue) in queue_by_task.items():
                self._learn_route(name, queue)
                if task_id not in self._ended:
                    self._task(task_id).queue = queue

    def route_of(self, name: str | None) -> str | None:
        """The one queue a task name was ever seen on, None when unknown or ambiguous."""
        with self._lock:
            queues = self._routes.get(name or "", set())
            return next(iter(queues)) if len(queues) == 1 else None

    def sent_queues(self) -> set[str]:
        """Queues named by task-sent events."""
        with self._lock:
            return set(self._sent_queues)

    def sent_at(self, task_id: str | None) -> float | None:
        with self._lock:
            task = self._tasks.get(task_id or "")
            return task.sent_at_s if task else None

    def drain(self) -> list[TaskOutcome]:
        """Outcomes since the previous drain."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
            return outcomes

    def in_flight(self, now_s: float) -> list[TaskOutcome]:
        """Tasks started and not ended on workers not known to be gone (ended fields None)."""
        with self._lock:
            return [TaskOutcome(task_id, task.name, task.queue, nodename, False, False, task.sent_at_s,
                                task.started_at_s, None)
                    for nodename, running in self._running.items()
                    if nodename not in self._workers or self._alive(self._workers[nodename], now_s)
                    for task_id, task in ((k, self._tasks[k]) for k in running)]

    def workers(self, now_s: float) -> list[tuple[WorkerState, bool]]:
        """(copy of each worker's state, alive) for workers heard from; long-gone workers are forgotten."""
        with self._lock:
            for nodename, worker in list(self._workers.items()):
                if now_s - worker.seen_at_s > self.forget_worker_after_s:
                    del self._workers[nodename]
                    for task_id in list(self._running.pop(nodename, {})):
                        self._tasks.pop(task_id, None)
            return [(replace(w, queues=set(w.queues)), self._alive(w, now_s))
                    for w in self._workers.values() if w.heartbeat_at_s is not None]

    def note_worker_queues(self, nodename: str | None, queues: set[str]) -> None:
        with self._lock:
            if nodename in self._workers:
                self._workers[nodename].queues |= queues

    def events_live(self, now_s: float) -> bool:
        """Whether task events are flowing: seen at least once and no live worker processes without them."""
        with self._lock:
            if not self.task_events_seen:
                return False
            for worker in self._workers.values():
                if self._alive(worker, now_s) and self._silent(worker, now_s):
                    return False
            return True

    def _alive(self, worker: WorkerState, now_s: float) -> bool:
        return not worker.offline and now_s - worker.seen_at_s <= 2 * worker.freq_s + self.heartbeat_slack_s

    def _silent(self, worker: WorkerState, now_s: float) -> bool:
        grew_at_s = worker.processed_grew_at_s
        if grew_at_s is None:
            return False
        if worker.task_event_at_s is None:
            return True
        grace_s = 2 * worker.freq_s + self.heartbeat_slack_s
        return worker.task_event_at_s < grew_at_s - grace_s and now_s >= grew_at_s + grace_s
