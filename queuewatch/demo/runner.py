"""`queuewatch demo`: embedded Redis, RQ workers, a synthetic workload, the collector and the dashboard."""
from __future__ import annotations

import functools
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TextIO

import psutil
import redis
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

import queuewatch
from queuewatch.demo.admin import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, ensure_demo_admin
from queuewatch.demo.embedded_redis import EmbeddedRedis, EmbeddedRedisError, child_popen_options
from queuewatch.demo.workload import (
    ASSET_QUEUE,
    EMAIL_QUEUE,
    NOTIFY_QUEUE,
    QUEUE_NAMES,
    REPORT_QUEUE,
    WEBHOOK_QUEUE,
    WorkloadConfig,
)
from queuewatch.settings import Settings
from storage.engine import StorageError

ALL_COMPONENTS = frozenset({"workers", "workload", "collector", "dashboard"})
DEMO_INTERVAL_S = 5.0
WORKER_GRACE_S = 10.0
"""Longest a worker may take to finish its current job after SIGTERM (demo jobs run for at most ~7 s)."""
SERVICE_GRACE_S = 5.0
COLD_STOP_GRACE_S = 3.0
WATCH_EVERY_S = 0.5


class DemoError(RuntimeError):
    """A part of the demo could not be started."""


@dataclass(frozen=True)
class WorkerSpec:
    """One demo RQ worker: its queues in priority order.

    `simple` runs jobs in the worker process itself (rq's SimpleWorker), so the memory that asset jobs keep
    shows in the worker's RSS; the others fork a work horse per job, as RQ does by default.
    """

    role: str
    queues: tuple[str, ...]
    simple: bool = False
    with_scheduler: bool = False


DEMO_WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("mailer-1", (NOTIFY_QUEUE, EMAIL_QUEUE)),
    WorkerSpec("mailer-2", (EMAIL_QUEUE, WEBHOOK_QUEUE)),
    WorkerSpec("reports-1", (REPORT_QUEUE, WEBHOOK_QUEUE, EMAIL_QUEUE), with_scheduler=True),
    WorkerSpec("assets-1", (ASSET_QUEUE,), simple=True),
    WorkerSpec("assets-2", (REPORT_QUEUE, ASSET_QUEUE), simple=True),
)


@dataclass
class Child:
    """A demo subprocess and how to stop it."""

    name: str
    process: subprocess.Popen
    log_path: Path
    stage: int
    grace_s: float
    signal_group: bool = False
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:]) or "    (empty log)"


def child_env() -> dict[str, str]:
    """Environment of the demo children: this source tree importable, output unbuffered."""
    env = dict(os.environ)
    root = str(Path(queuewatch.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_argv(spec: WorkerSpec, redis_url: str, name: str) -> list[str]:
    """Command line of one RQ worker."""
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "--name", name]
    if spec.simple:
        argv += ["--worker-class", "rq.worker.SimpleWorker"]
    if spec.with_scheduler:
        argv.append("--with-scheduler")
    return argv + list(spec.queues)


class DemoProcesses:
    """Starts the demo's subprocesses, tells which died, and stops them all, later stages first."""

    def __init__(self, log_dir: Path, *, hurry: threading.Event | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.hurry = hurry or threading.Event()
        self.env = dict(env) if env is not None else child_env()
        self.children: list[Child] = []
        self.run_id = os.urandom(2).hex()

    def spawn(self, name: str, argv: Sequence[str], *, stage: int, grace_s: float,
              signal_group: bool = False) -> Child:
        """Start one child with its output in `<log_dir>/<name>.log`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            try:
                process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                           **child_popen_options())
            except OSError as exc:
                raise DemoError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        child = Child(name, process, log_path, stage, grace_s, signal_group)
        self.children.append(child)
        return child

    def start_workers(self, redis_url: str, specs: Iterable[WorkerSpec] = DEMO_WORKERS) -> list[Child]:
        """One RQ worker subprocess per spec."""
        return [self.spawn(f"worker-{spec.role}",
                           worker_argv(spec, redis_url, f"demo-{spec.role}-{self.run_id}"),
                           stage=0, grace_s=WORKER_GRACE_S) for spec in specs]

    def start_workload(self, redis_url: str, config: WorkloadConfig) -> Child:
        """The producer subprocess."""
        argv = [sys.executable, "-m", "queuewatch.demo.workload", "--redis", redis_url, *config.to_argv()]
        return self.spawn("workload", argv, stage=1, grace_s=SERVICE_GRACE_S)

    def start_collector(self, redis_url: str, db_url: str, interval_s: float = DEMO_INTERVAL_S) -> Child:
        """`queuewatch collect` as a subprocess."""
        argv = [sys.executable, "-m", "queuewatch.cli", "collect", "--redis", redis_url, "--db", db_url,
                "--interval", f"{interval_s:g}"]
        return self.spawn("collector", argv, stage=2, grace_s=SERVICE_GRACE_S + interval_s)

    def start_dashboard(self, db_url: str, port: int) -> Child:
        """`queuewatch dashboard` (which runs streamlit in its own child) as a subprocess."""
        argv = [sys.executable, "-m", "queuewatch.cli", "dashboard", "--db", db_url, "--port", str(port)]
        return self.spawn("dashboard", argv, stage=3, grace_s=SERVICE_GRACE_S, signal_group=True)

    def dead(self) -> list[Child]:
        """Children that have exited."""
        return [child for child in self.children if not child.alive()]

    def pids(self) -> set[int]:
        """Process ids of the running children and all their descendants."""
        found: set[int] = set()
        for child in self.children:
            found.add(child.process.pid)
            found.update(proc.pid for proc in _descendants(child.process.pid))
        return found

    def stop(self) -> None:
        """SIGTERM each stage, wait its grace, SIGTERM again, then SIGKILL what is left (descendants too)."""
        for stage in sorted({child.stage for child in self.children}, reverse=True):
            group = [child for child in self.children if child.stage == stage]
            for child in group:
                _remember_descendants(child)
                _signal(child, signal.SIGTERM)
            self._wait(group, max(child.grace_s for child in group))
            late = [child for child in group if child.alive()]
            for child in late:
                _signal(child, signal.SIGTERM)
            self._wait(late, COLD_STOP_GRACE_S)
            for child in group:
                _remember_descendants(child)
                if child.alive():
                    _signal(child, signal.SIGKILL)
                child.process.wait()
        self._kill_leftovers()

    def _wait(self, group: list[Child], timeout_s: float) -> None:
        deadline_s = time.monotonic() + timeout_s
        while any(child.alive() for child in group) and time.monotonic() < deadline_s:
            if self.hurry.is_set():
                return
            time.sleep(0.05)

    def _kill_leftovers(self) -> None:
        leftovers = [proc for child in self.children for proc in child.seen.values() if _running(proc)]
        for proc in leftovers:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(leftovers, timeout=3)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _remember_descendants(child: Child) -> None:
    if child.alive():
        child.seen.update((proc.pid, proc) for proc in _descendants(child.process.pid))


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(child: Child, sig: signal.Signals) -> None:
    """Signal the child, or its whole process group (for a child that runs children of its own)."""
    try:
        if child.signal_group or sig == signal.SIGKILL:
            os.killpg(child.process.pid, sig)
        else:
            child.process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


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


def _redacted(redis_url: str) -> str:
    try:
        return make_url(redis_url).render_as_string(hide_password=True)
    except ArgumentError:
        return redis_url


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
        raise DemoError(f"bad Redis URL {_redacted(redis_url)!r}: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise DemoError(f"cannot reach Redis at {_redacted(redis_url)}: {exc}") from exc


def run_demo(settings: Settings, *, redis_url_given: bool = False, dashboard_port: int = 8501,
             data_dir: Path = Path("data"), duration_s: float | None = None,
             components: Iterable[str] = ALL_COMPONENTS, workload: WorkloadConfig | None = None,
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
                if "collector" in wanted:
                    processes.start_collector(redis_url, db_url)
                if "dashboard" in wanted:
                    ensure_demo_admin(db_url)
                    processes.start_dashboard(db_url, dashboard_port)
                _print_banner(say, wanted, dashboard_port, redis_url, server, db_location, processes.log_dir)
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
                  server: EmbeddedRedis | None, db_location: str, log_dir: Path) -> None:
    say("queuewatch demo is running")
    if "dashboard" in components:
        say(f"  Dashboard:  http://localhost:{dashboard_port}  (ready a few seconds after start)")
        say(f"  Log in as:  {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}")
    where = (f"embedded redis-server, files in {server.data_dir}" if server
             else "given; demo jobs are added to it")
    say(f"  Redis:      {_redacted(redis_url)}  ({where})")
    say(f"  Database:   {db_location}")
    if "workers" in components:
        say(f"  Workers:    {len(DEMO_WORKERS)} RQ workers on {', '.join(QUEUE_NAMES)}")
    if "collector" in components:
        say(f"  Collector:  every {DEMO_INTERVAL_S:g} s")
    say(f"  Logs:       {log_dir}")
    say("Press Ctrl-C to stop.")
