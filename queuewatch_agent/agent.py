"""The publishing thread: every period, this process's memory and job counts go to Redis with a TTL."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from queuewatch_agent.memory import children_rss_mb, percentage_of, process_figures_mb
from queuewatch_agent.report import (
    DEFAULT_PREFIX,
    INDEX_GRACE_S,
    TTL_PERIODS,
    AgentReport,
    index_key,
    report_key,
)

log = logging.getLogger("queuewatch_agent")

DEFAULT_PERIOD_S = 5.0
DEFAULT_MEMORY_LIMIT_MB = 1024.0
SOCKET_TIMEOUT_S = 2.0
ERROR_LOG_EVERY_S = 60.0
ENV_PREFIX = "QUEUEWATCH_AGENT_"


@dataclass(frozen=True)
class AgentConfig:
    """Where and how often an agent publishes; None fields fall back to the worker's own settings."""

    redis_url: str | None = None  # default: the worker's Redis (RQ connection, Celery broker, BullMQ)
    prefix: str = DEFAULT_PREFIX
    period_s: float = DEFAULT_PERIOD_S
    hostname: str | None = None  # default: socket.gethostname()
    memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB  # for the report's own memory_percentage
    enabled: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AgentConfig:
        """Settings from QUEUEWATCH_AGENT_* variables (read when the worker starts), then `overrides`."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, cast in (("redis_url", str), ("prefix", str), ("period_s", float), ("hostname", str),
                           ("memory_limit_mb", float)):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                try:
                    values[name] = cast(raw)
                except ValueError:
                    log.warning("ignoring %s%s=%r (not a number)", ENV_PREFIX, name.upper(), raw)
        if env.get(ENV_PREFIX + "DISABLED", "").lower() in ("1", "true", "yes"):
            values["enabled"] = False
        config = replace(cls(), **values, **{k: v for k, v in overrides.items() if v is not None})
        if config.period_s <= 0:
            config = replace(config, period_s=DEFAULT_PERIOD_S)
        return config

    @property
    def ttl_s(self) -> float:
        return self.period_s * TTL_PERIODS


def client_from_url(url: str) -> redis.Redis:
    """A client with short socket timeouts, so a stuck Redis never holds the publishing thread for long."""
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S)


def client_like(connection: redis.Redis) -> redis.Redis:
    """A separate client to the same server as a worker's connection (same pool settings, short timeouts)."""
    pool = connection.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": SOCKET_TIMEOUT_S,
              "socket_connect_timeout": SOCKET_TIMEOUT_S}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class _ErrorLog:
    """Logs a failure at most once per ERROR_LOG_EVERY_S."""

    def __init__(self) -> None:
        self._last_s: float | None = None
        self.suppressed = 0

    def __call__(self, message: str, exc: BaseException) -> None:
        now_s = time.monotonic()
        if self._last_s is not None and now_s - self._last_s < ERROR_LOG_EVERY_S:
            self.suppressed += 1
            return
        skipped = f" ({self.suppressed} more since the last message)" if self.suppressed else ""
        log.warning("%s: %s%s", message, exc, skipped)
        self._last_s, self.suppressed = now_s, 0


class Agent:
    """Publishes one worker process's report every `config.period_s` from a daemon thread; never raises."""

    def __init__(self, library: str, worker_id: str, queues: Sequence[str], *, config: AgentConfig,
                 client: redis.Redis | None = None, pid: int | None = None, started_at_s: float | None = None,
                 role: str = "worker", parent_id: str | None = None,
                 state_fn: Callable[[], str] | None = None, jobs_fn: Callable[[], int] | None = None,
                 client_ids_fn: Callable[[], tuple[int, ...]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.library = library
        self.worker_id = worker_id
        self.queues = tuple(queues)
        self.config = config
        self.client = client if client is not None else client_from_url(config.redis_url or "redis://localhost:6379/0")
        self.pid = pid or os.getpid()
        self.hostname = config.hostname or socket.gethostname()
        self.clock = clock
        self.started_at_s = started_at_s if started_at_s is not None else clock()
        self.role = role
        self.parent_id = parent_id
        self.state_fn = state_fn
        self.jobs_fn = jobs_fn
        self.client_ids_fn = client_ids_fn
        self.jobs_processed = 0
        self.failed_jobs = 0
        self.key = report_key(library, worker_id, config.prefix)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error_log = _ErrorLog()

    def record_job(self, *, failed: bool = False) -> None:
        """Count one finished job (failed or not)."""
        with self._lock:
            self.jobs_processed += 1
            self.failed_jobs += int(failed)

    def report(self) -> AgentReport:
        """This process's report now."""
        memory = process_figures_mb(self.pid) or {}
        with self._lock:
            jobs, failed = self.jobs_processed, self.failed_jobs
        if self.jobs_fn is not None:
            jobs = max(jobs, int(self.jobs_fn()))
        rss_mb = memory.get("rss_mb")
        percentage = percentage_of(rss_mb, self.config.memory_limit_mb) if rss_mb is not None else None
        return AgentReport(
            library=self.library, worker_id=self.worker_id, queues=self.queues, pid=self.pid,
            hostname=self.hostname, started_at_s=self.started_at_s, reported_at_s=self.clock(),
            period_s=self.config.period_s, ttl_s=self.config.ttl_s, jobs_processed=jobs, failed_jobs=failed,
            state=self.state_fn() if self.state_fn else "idle", role=self.role, parent_id=self.parent_id,
            memory_percentage=percentage,
            memory_limit_mb=self.config.memory_limit_mb, children_rss_mb=children_rss_mb(self.pid),
            client_ids=self.client_ids_fn() if self.client_ids_fn else (), **memory,
        )

    def publish(self) -> bool:
        """Write the report, refresh the index entry and trim expired entries (one round trip)."""
        try:
            report = self.report()
            now_s = report.reported_at_s
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.key, report.to_json(), px=max(1, int(self.config.ttl_s * 1000)))
            pipe.zadd(index_key(self.config.prefix), {self.key: now_s + self.config.ttl_s})
            pipe.zremrangebyscore(index_key(self.config.prefix), "-inf", f"({now_s - INDEX_GRACE_S}")
            pipe.execute()
            return True
        except Exception as exc:  # the worker must never fail because of its agent
            self._error_log(f"queuewatch agent {self.key} could not publish", exc)
            return False

    def remove(self) -> bool:
        """Delete the report and its index entry (a clean shutdown)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.key)
            pipe.zrem(index_key(self.config.prefix), self.key)
            pipe.execute()
            return True
        except Exception as exc:
            self._error_log(f"queuewatch agent {self.key} could not remove its report", exc)
            return False

    def start(self) -> Agent:
        """Start the daemon thread (it publishes at once, then every period); a no-op if running."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"queuewatch-agent-{self.worker_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, *, wait_s: float = SOCKET_TIMEOUT_S) -> None:
        """Stop publishing; the thread removes the report on its way out (waits up to `wait_s` for it)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and wait_s > 0:
            thread.join(wait_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.pid == os.getpid()

    def _run(self) -> None:
        while True:
            self.publish()
            if self._stop.wait(self.config.period_s):
                break
        self.remove()
