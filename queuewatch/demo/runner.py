"""`queuewatch demo`: embedded Redis, RQ, BullMQ and Celery workers with seeded workloads, collector, UI."""
from __future__ import annotations

import functools
import importlib.util
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO

import redis
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from queuewatch.demo.admin import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, ensure_demo_admin
from queuewatch.demo.bullmq_workload import BULLMQ_QUEUES, BULLMQ_WORKERS, PAUSED_QUEUE, BullMQConfig
from queuewatch.demo.celery_app import CELERY_QUEUES, PDF_QUEUE, PDF_TIME_LIMIT_S
from queuewatch.demo.celery_workload import CELERY_CONCURRENCY, CeleryConfig
from queuewatch.demo.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from queuewatch.demo.processes import DEMO_INTERVAL_S, DemoError, DemoProcesses
from queuewatch.demo.workload import DEMO_WORKERS, QUEUE_NAMES, WorkloadConfig
from config.settings import Settings, redacted
from storage.engine import StorageError

RQ_COMPONENTS = frozenset({"workers", "workload"})
"""RQ workers and the RQ producer (separate, so tests can run either)."""
ALL_COMPONENTS = frozenset({*RQ_COMPONENTS, "bullmq", "celery", "collector", "dashboard"})
"""`bullmq`: BullMQ workers and producer; `celery`: the Celery worker and producer."""
WATCH_EVERY_S = 0.5


class StopRequest:
    """Set by the first SIGINT/SIGTERM; a second one stops without waiting for running jobs."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()

    def handle(self, signum: int, frame: object) -> None:
        (self.hurry if self.requested.is_set() else self.requested).set()


@contextmanager
def signals_handled(stop: StopRequest) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `stop` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, stop.handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def resolve_db_url(db_url: str) -> tuple[str, str]:
    """The URL with a relative SQLite path made absolute (the dashboard runs elsewhere), and where it is."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return url.set(database=str(path)).render_as_string(hide_password=False), str(path)
    return db_url, url.render_as_string(hide_password=True)



def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _check_request(components: frozenset[str], dashboard_port: int) -> str | None:
    unknown = components - ALL_COMPONENTS
    if unknown:
        return f"unknown component(s) {sorted(unknown)}; known: {sorted(ALL_COMPONENTS)}"
    if components & {"collector", "dashboard"} and importlib.util.find_spec("queuewatch.cli") is None:
        return "queuewatch.cli is not installed, so the collector and dashboard cannot run"
    if "dashboard" in components and _port_in_use(dashboard_port):
        return f"port {dashboard_port} is already in use; pass another dashboard port (--port)"
    return None


def _check_redis(redis_url: str) -> None:
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except ValueError as exc:
        raise DemoError(f"bad Redis URL {redacted(redis_url)!r}: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise DemoError(f"cannot reach Redis at {redacted(redis_url)}: {exc}") from exc


def run_demo(settings: Settings, *, redis_url_given: bool = False, dashboard_port: int = 8501,
             data_dir: Path = Path("data"), duration_s: float | None = None,
             components: Iterable[str] = ALL_COMPONENTS, workload: WorkloadConfig | None = None,
             bullmq: BullMQConfig | None = None, celery: CeleryConfig | None = None,
             out: TextIO | None = None) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `duration_s`: 0 on a clean stop, 1 on a failure, 2 on misuse."""
    say = functools.partial(print, file=out or sys.stdout, flush=True)
    wanted = frozenset(components)
    try:
        problem = _check_request(wanted, dashboard_port)
        db_url, db_location = resolve_db_url(settings.db_url)
    except ArgumentError as exc:
        problem = f"bad database URL {settings.db_url!r}: {exc}"
    if problem:
        say(f"queuewatch demo: {problem}")
        return 2
    stop = StopRequest()
    with signals_handled(stop):
        try:
            with ExitStack() as stack:
                server: EmbeddedRedis | None = None
                if redis_url_given:
                    redis_url = settings.redis_url
                    _check_redis(redis_url)
                else:
                    server = stack.enter_context(EmbeddedRedis(Path(data_dir) / "redis"))
                    redis_url = server.url
                processes = stack.enter_context(DemoProcesses(Path(data_dir) / "demo-logs", hurry=stop.hurry))
                if "workers" in wanted:
                    processes.start_workers(redis_url)
                if "workload" in wanted:
                    processes.start_workload(redis_url, workload or WorkloadConfig())
                if "bullmq" in wanted:
                    processes.start_bullmq(redis_url, bullmq or BullMQConfig())
                if "celery" in wanted:
                    processes.start_celery(redis_url, celery or CeleryConfig())
                if "collector" in wanted:
                    processes.start_collector(redis_url, db_url)
                if "dashboard" in wanted:
                    ensure_demo_admin(db_url)
                    processes.start_dashboard(db_url, dashboard_port)
                _print_banner(say, wanted, dashboard_port, redis_url, server, db_location, processes.log_dir,
                              bullmq or BullMQConfig())
                code = _watch(processes, server, stop, duration_s, say)
                say("Stopping the demo (workers finish their current job; Ctrl-C again to hurry)...")
        except (DemoError, EmbeddedRedisError, StorageError) as exc:
            say(f"queuewatch demo: {exc}")
            return 1
    say("Demo stopped." if code == 0 else "Demo stopped after a failure.")
    return code


def _watch(processes: DemoProcesses, server: EmbeddedRedis | None, stop: StopRequest,
           duration_s: float | None, say: functools.partial) -> int:
    """Wait for a stop request or the end of `duration_s`; 1 as soon as a child or the embedded Redis dies."""
    deadline_s = time.monotonic() + duration_s if duration_s is not None else None
    while not stop.requested.is_set():
        if deadline_s is not None and time.monotonic() >= deadline_s:
            return 0
        for child in processes.dead():
            say(f"queuewatch demo: {child.name} exited unexpectedly (exit code {child.process.returncode}); "
                f"stopping the others. Last lines of {child.log_path}:\n{child.log_tail()}")
            return 1
        if server is not None and not server.is_running():
            say(f"queuewatch demo: the embedded redis-server exited unexpectedly; see {server.log_path}")
            return 1
        stop.requested.wait(WATCH_EVERY_S)
    return 0


def _print_banner(say: functools.partial, components: frozenset[str], dashboard_port: int, redis_url: str,
                  server: EmbeddedRedis | None, db_location: str, log_dir: Path,
                  bullmq: BullMQConfig) -> None:
    say("queuewatch demo is running")
    if "dashboard" in components:
        say(f"  Dashboard:  http://localhost:{dashboard_port}  (ready a few seconds after start)")
        say(f"  Log in as:  {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}")
    where = (f"embedded redis-server, files in {server.data_dir}" if server
             else "given; demo jobs are added to it")
    say(f"  Redis:      {redacted(redis_url)}  ({where})")
    say(f"  Database:   {db_location}")
    parts_of = (("RQ", RQ_COMPONENTS), ("BullMQ", {"bullmq"}), ("Celery", {"celery"}))
    libraries = [name for name, parts in parts_of if components & parts]
    say(f"  Libraries:  {', '.join(libraries) or 'none (no workers or producers)'}")
    if components & RQ_COMPONENTS:
        workers = f"{len(DEMO_WORKERS)} workers" if "workers" in components else "no workers"
        producer = "seeded producer" if "workload" in components else "no producer"
        say(f"  RQ:         {workers}, {producer}; queues {', '.join(QUEUE_NAMES)}")
    if "bullmq" in components:
        say(f"  BullMQ:     {len(BULLMQ_WORKERS)} asyncio workers (Python bullmq, metrics on), "
            f"seeded producer; "
            f"queues {', '.join(BULLMQ_QUEUES)}; {PAUSED_QUEUE} paused for {bullmq.pause_for_s:g} s "
            f"every {bullmq.pause_every_s:g} s")
    if "celery" in components:
        say(f"  Celery:     1 worker (-E, {CELERY_CONCURRENCY} prefork processes), seeded producer; "
            f"queues {', '.join(CELERY_QUEUES)}; {PDF_QUEUE} time limit {PDF_TIME_LIMIT_S} s")
    if "collector" in components:
        say(f"  Collector:  every {DEMO_INTERVAL_S:g} s")
    say(f"  Logs:       {log_dir}")
    say("Press Ctrl-C to stop.")
