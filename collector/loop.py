"""The collection loop: read Redis, derive snapshots and health, store one cycle per transaction."""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import redis
from sqlalchemy import Engine

from collector.alerting import CycleAlerts, consecutive, reader_source, redis_source
from collector.agents import AGENT_SOURCE, AgentIndex, agent_memory, read_agent_index, with_agents
from core.backoff import backoff_s
from core.derive import RATE_WINDOW_S, QueueWindow, WindowEntry, snapshot_row
from core.failures import failure_records
from collector.memory import host_memory, process_memory
from core.model import Cursor, QueueReading, RedisReading, WorkerReading
from core.problems import ProblemLog
from core.sketch import Sketch
from config.settings import Settings
from queuewatch_agent.report import DEFAULT_PREFIX as AGENT_PREFIX
from queuewatch_agent.report import AgentReport
from storage.engine import StorageError
from core.recycle import recycle_verdict
from storage.retention import purge
from storage.status import REDIS_OUTAGE_PREFIX
from storage.writer import CycleRecord, record_outage, write_alerts, write_cycle
from storage.cursors import latest_cursors, recent_intervals
from storage.leases import fence

if TYPE_CHECKING:
    from collector.sharing import Coordinator

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 600.0
# What parsing replies of the wrong shape raises (a server that answers every command with +OK, say).
UNEXPECTED_REPLY_ERRORS = (TypeError, AttributeError, ValueError, IndexError, KeyError, redis.DataError)
# A server that answers but is not Redis (garbage, HTTP) is an outage too: protocol and response errors.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ResponseError,
                redis.InvalidResponse)


class Reader(Protocol):
    """A queue backend: reads one library's state from one Redis."""

    library: str

    def read(self, cursors: dict[str, Cursor], *, unseen: Cursor = ...) -> RedisReading: ...


QueueKey = tuple[str, str]  # (library, queue name)


@dataclass
class CycleResult:
    """What one cycle did."""

    ok: bool
    queue_count: int = 0
    worker_count: int = 0
    round_trips: int = 0
    alert_changes: list = field(default_factory=list)
    error: str | None = None


class Collector:
    """Runs cycles over one or more readers and one database; keeps cursors and rate windows between cycles."""

    def __init__(self, settings: Settings, engine: Engine, readers: Reader | Sequence[Reader], *,
                 hostname: str | None = None, clock: Callable[[], float] = time.time,
                 agents_client: redis.Redis | None = None, agents_prefix: str = AGENT_PREFIX,
                 problems: ProblemLog | None = None, coordinator: "Coordinator | None" = None):
        self.settings = settings
        self.problems = problems or ProblemLog()
        self.agents_client, self.agents_prefix = agents_client, agents_prefix
        self.engine = engine
        self.readers: list[Reader] = [readers] if not isinstance(readers, Sequence) else list(readers)
        self.hostname = hostname or socket.gethostname()
        self.clock = clock
        self.coordinator = coordinator
        self.queue_targets: dict[str, str] = {}  # queue name -> the Redis it was last read from
        self.load_history()
        self._last_purge_s = 0.0
        self.redis_failures: dict[str, int] = {}  # Redis URL -> failed cycles in a row

    def load_history(self) -> None:
        """Cursors, last sample times and rate windows as stored (at start, and when this collector takes
        over a target that another collector read until now)."""
        self.cursors: dict[QueueKey, Cursor] = {}
        self.last_sampled_at_s: dict[QueueKey, float] = {}
        for library in {reader.library for reader in self.readers}:
            for queue_name, resume in latest_cursors(self.engine, library=library).items():
                key = (library, queue_name)
                self.cursors[key] = Cursor(resume.finished_cursor, resume.failed_cursor, resume.cursor_state)
                self.last_sampled_at_s[key] = resume.sampled_at_s
        self.windows: dict[QueueKey, QueueWindow] = self._stored_windows()

    def targets(self) -> list[str]:
        """Every configured Redis, as redis://host:port/db (the unit that collectors share)."""
        return sorted({reader_source(reader) for reader in self.readers})

    def _stored_windows(self) -> dict[QueueKey, QueueWindow]:
        """The rate windows as the stored history left them, so a restart changes no figure."""
        windows: dict[QueueKey, QueueWindow] = {}
        for row in recent_intervals(self.engine, self.clock() - QueueWindow().span_s):
            window = windows.setdefault((row.library, row.queue_name), QueueWindow())
            window.push(WindowEntry(row.sampled_at_s, row.interval_s, row.finished_delta, row.failed_delta,
                                    row.timeout_delta, Sketch.from_bytes(row.processing_sketch or b""),
                                    Sketch.from_bytes(row.wait_sketch or b"")))
        return windows

    def _read_all(self, targets: set[str] | None = None) -> tuple[list[tuple[Reader, RedisReading]], list[str],
                                                                   set[str]]:
        """(reader, reading) of every reader (of `targets` only, when given) that answered, the errors of those
        that did not, and the Redis URLs (without password) that failed."""
        readings, errors, failed = [], [], set()
        for reader in self.readers:
            if targets is not None and reader_source(reader) not in targets:
                continue
            cursors = {name: cursor for (library, name), cursor in self.cursors.items() if library == reader.library}
            # a queue without a cursor: count what its registries still hold of the recent past (registries
            # that forget at different ages are both complete over the rate window only)
            unseen = Cursor(0.0, 0.0, recent_past_s=RATE_WINDOW_S)
            try:
                readings.append((reader, reader.read(cursors, unseen=unseen)))
            except REDIS_ERRORS as exc:
                errors.append(f"{REDIS_OUTAGE_PREFIX} ({reader.library}): {exc}")
                failed.add(reader_source(reader))
            except UNEXPECTED_REPLY_ERRORS as exc:  # replies of the wrong shape: whatever answers is not Redis
                errors.append(f"{REDIS_OUTAGE_PREFIX} ({reader.library}): replies that Redis would not send "
                              f"({type(exc).__name__}: {exc})")
                failed.add(reader_source(reader))
        return readings, errors, failed

    def run_cycle(self, targets: set[str] | None = None) -> CycleResult:
        """One cycle (over the leased `targets` only, when shared); Redis errors are recorded as an outage,
        storage errors raise StorageError."""
        started_s = self.clock()
        tokens = self.coordinator.renew(targets) if self.coordinator is not None and targets is not None else None
        if tokens is not None:
            targets = set(tokens)
        readings, errors, failed = self._read_all(targets)
        failed_before = {url: n for url, n in self.redis_failures.items() if targets is not None and url not in targets}
        self.redis_failures = {**failed_before, **consecutive(self.redis_failures, failed)}
        if errors:
            log.warning("cycle %s: %s", "skipped" if not readings else "partial", "; ".join(errors))
            record_outage(self.engine, started_s, self.clock(), "; ".join(errors))
        if not readings and (errors or tokens is None):
            cycle_alerts = self._cycle_alerts(self.clock(), errors, targets)
            changes = write_alerts(self.engine, cycle_alerts.now_s, cycle_alerts.plan,
                                   fence=self._fence(tokens, cycle_alerts))
            self._log_changes(changes)
            return CycleResult(ok=False, alert_changes=changes, error="; ".join(errors))
        now_s = max((reading.read_at_s for _, reading in readings), default=self.clock())
        cycle_alerts = self._cycle_alerts(now_s, errors, targets)
        workers = [worker for _, reading in readings for worker in reading.workers]
        worker_rows, rss_by_queue = self._worker_rows(workers, now_s)
        worker_target = {(w.library, w.name): reader_source(r)
                         for r, reading in readings for w in reading.workers}
        live = _live_workers(worker_rows)
        queue_rows: list[dict] = []
        windows: dict[QueueKey, QueueWindow] = {}
        stored: list[tuple[str, float, list]] = []
        for reader, reading in readings:
            kept = []
            for queue in reading.queues:
                key = (queue.library, queue.queue_name)
                derived = self.problems.guard(f"{queue.library} queue {queue.queue_name}", "queue", lambda: (
                    self._queue_row(queue, reading, rss_by_queue.get(key), live.get(key, 0))))
                if derived is None:
                    continue
                row, queue_breaches, windows[key] = derived
                kept.append(queue)
                queue_rows.append({**row, "target": reader_source(reader)})
                cycle_alerts.breaches.setdefault(queue.queue_name, []).extend(queue_breaches)
                cycle_alerts.libraries.setdefault(queue.queue_name, queue.library)
                cycle_alerts.source_of_queue.setdefault(queue.queue_name, reader_source(reader))
            stored.append((reader_source(reader), reading.read_at_s, kept))
        workers_rss_mb = sum(r["rss_mb"] or 0.0 for r in worker_rows
                             if r["alive"] and r["hostname"] == self.hostname)
        host_row = {**host_memory(self.hostname, workers_rss_mb), "sampled_at_s": now_s}
        round_trips = sum(reading.round_trips for _, reading in readings)
        if tokens is not None:  # workers known from agent reports only go with the Redis the agents publish on
            agents_source = redis_source(self.agents_client)
            worker_rows = [{**row, "target": worker_target.get((row["library"], row["worker_name"]), agents_source)}
                           for row in worker_rows]
        failures = [record for _, read_at_s, queues in stored for record in failure_records(queues, read_at_s)]
        record = CycleRecord(started_s, self.clock(), round_trips, queue_rows, worker_rows, host_row,
                             failures=failures, failures_kept=self.settings.failures_kept)

        changes = write_cycle(self.engine, record, plan_rules=cycle_alerts.plan, problems=self.problems,
                              fence=self._fence(tokens, cycle_alerts))
        for target, read_at_s, queues in stored:
            if cycle_alerts.accepted is not None and target not in cycle_alerts.accepted:
                continue  # fenced out: another collector holds the target now
            for queue in queues:
                self.queue_targets[queue.queue_name] = target
                key = (queue.library, queue.queue_name)
                self.cursors[key] = queue.cursor
                self.last_sampled_at_s[key] = read_at_s
        self.windows.update(windows)
        self._log_changes(changes)
        stored_count = sum(1 for row in queue_rows
                           if cycle_alerts.accepted is None or row["target"] in cycle_alerts.accepted)
        return CycleResult(ok=True, queue_count=stored_count, worker_count=len(worker_rows),
                           round_trips=round_trips, alert_changes=changes, error="; ".join(errors) or None)

    def _cycle_alerts(self, now_s: float, errors: list[str], targets: set[str] | None = None) -> CycleAlerts:
        sources = {reader_source(reader) for reader in self.readers}
        if targets is not None:
            sources &= targets
        return CycleAlerts(now_s, self.settings.alert_timings, sources=sources,
                           failed={url: n for url, n in self.redis_failures.items() if url in sources},
                           some_reader_failed=bool(errors), queue_targets=dict(self.queue_targets))

    def _fence(self, tokens: dict[str, int] | None, cycle_alerts: CycleAlerts):
        """The write's lease check (shared collectors): it notes the targets still held in `cycle_alerts`."""
        if tokens is None or self.coordinator is None:
            return None
        owner = self.coordinator.member.collector_id

        def check(conn) -> set[str]:
            cycle_alerts.accepted = fence(conn, owner, tokens)
            return cycle_alerts.accepted
        return check

    @staticmethod
    def _log_changes(changes: list) -> None:
        for change in changes:
            if change.kind != "updated":
                log.info("alert %s %s (%s, %s)", change.alert_id, change.kind, change.severity, change.value)

    def _queue_row(self, queue: QueueReading, reading: RedisReading, memory_usage_mb: float | None,
                   live_workers: int) -> tuple[dict, list[Breach], QueueWindow]:
        """One queue's snapshot row, its breaches and its window including this interval."""
        key = (queue.library, queue.queue_name)
        previous_s = self.last_sampled_at_s.get(key)
        if previous_s is not None:
            interval_s = reading.read_at_s - previous_s
        elif queue.counted_since_s is not None:  # a first reading that counted the recent past
            interval_s = reading.read_at_s - queue.counted_since_s
        else:
            interval_s = self.settings.interval_s
        return snapshot_row(
            queue, self.windows.get(key, QueueWindow()), now_s=reading.read_at_s,
            interval_s=max(interval_s, 0.001), memory_usage_mb=memory_usage_mb,
            thresholds=self.settings.thresholds.for_queue(queue.queue_name), unavailable=reading.unavailable,
            live_workers=live_workers if reading.workers_known else None,
            min_jobs=self.settings.alert_timings.for_queue(queue.queue_name).min_jobs)

    def _worker_rows(self, workers: list[WorkerReading],
                     now_s: float) -> tuple[list[dict], dict[QueueKey, float]]:
        """Worker rows (agent-only workers too) with memory from agent, psutil or None; max RSS per queue."""
        agents = AgentIndex()
        if self.agents_client is not None:
            try:
                agents = read_agent_index(self.agents_client, now_s, prefix=self.agents_prefix,
                                          problems=self.problems)
            except redis.RedisError as exc:
                log.warning("agent reports not read: %s", exc)
        rows: list[dict] = []
        rss_by_queue: dict[QueueKey, float] = {}
        for worker, report in with_agents(workers, agents):
            row = self.problems.guard(f"{worker.library} worker {worker.name}", "worker",
                                      lambda: self._worker_row(worker, report, now_s))
            if row is None:
                continue
            rows.append(row)
            if row["rss_mb"] is not None:
                for queue_name in worker.queues:
                    key = (worker.library, queue_name)
                    rss_by_queue[key] = max(rss_by_queue.get(key, 0.0), row["rss_mb"])
        return rows, rss_by_queue

    def _worker_row(self, worker: WorkerReading, report: AgentReport | None, now_s: float) -> dict:
        """One worker_snapshots row (without ids): memory from its agent, else psutil on this host, else None."""
        limits = self.settings.thresholds.for_queue(worker.queues[0] if worker.queues else "")
        memory = agent_memory(report, limits.memory_hard_limit_mb) if report is not None else None
        source = AGENT_SOURCE
        if memory is None and worker.alive and worker.pid and worker.hostname == self.hostname:
            memory, source = process_memory(worker.pid, limits.memory_hard_limit_mb), "psutil"
        uptime_s = now_s - worker.birth_at_s if worker.birth_at_s is not None else None
        should_recycle, reason = recycle_verdict(worker.jobs_processed, uptime_s,
                                                 memory["rss_mb"] if memory else None, limits)
        return {
            "sampled_at_s": now_s, "worker_name": worker.name, "library": worker.library,
            "queues": ",".join(worker.queues), "pid": worker.pid, "hostname": worker.hostname,
            "state": worker.state, "alive": worker.alive, "jobs_processed": worker.jobs_processed,
            "successful_jobs": worker.successful_jobs, "failed_jobs": worker.failed_jobs,
            "birth_at_s": worker.birth_at_s, "last_heartbeat_at_s": worker.last_heartbeat_at_s,
            "memory_source": source if memory else None,
            "rss_mb": None, "heap_used_mb": None, "heap_total_mb": None, "external_mb": None,
            "array_buffers_mb": None, "memory_percentage": None,
            **(memory or {}),
            "should_recycle": should_recycle, "recycle_reason": reason,
        }

    def purge_if_due(self) -> dict[str, int] | None:
        """Apply retention at most every RETENTION_EVERY_S seconds."""
        now_s = self.clock()
        if now_s - self._last_purge_s < RETENTION_EVERY_S:
            return None
        self._last_purge_s = now_s
        counts = purge(self.engine, now_s - self.settings.retention_s,
                       rollup_cutoff_s=now_s - self.settings.rollup_retention_s)
        if any(counts.values()):
            log.info("retention removed %s", counts)
        return counts

    def run(self, stop: threading.Event, *, once: bool = False) -> int:
        """Cycle every interval until `stop` is set; back off (capped) while Redis or the database fails."""
        if self.coordinator is not None:
            from collector.sharing import run_shared

            return run_shared(self, self.coordinator, stop, once=once)
        failures = 0
        while not stop.is_set():
            cycle_started = time.monotonic()
            try:
                result = self.run_cycle()
                self.purge_if_due()
            except StorageError as exc:
                log.error("database error, cycle not stored (it will be counted next cycle): %s", exc)
                result = CycleResult(ok=False, error=str(exc))
            if once:
                return 0 if result.ok else 1
            failures = 0 if result.ok else failures + 1
            wait_s = backoff_s(self.settings.interval_s, failures, self.settings.backoff_cap_s)
            stop.wait(max(0.0, wait_s - (time.monotonic() - cycle_started)))
        return 0


def _live_workers(worker_rows: list[dict]) -> dict[QueueKey, int]:
    """Live workers per (library, queue) they consume."""
    live: dict[QueueKey, int] = {}
    for row in worker_rows:
        if row["alive"]:
            for queue_name in filter(None, row["queues"].split(",")):
                live[(row["library"], queue_name)] = live.get((row["library"], queue_name), 0) + 1
    return live
