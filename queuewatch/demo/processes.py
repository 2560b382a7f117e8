"""The demo's subprocesses: each part (RQ, BullMQ, Celery, collector, dashboard) started, watched, stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psutil

import queuewatch
from queuewatch.demo import bullmq_workload, celery_workload
from queuewatch.demo.bullmq_workload import BULLMQ_WORKERS, BullMQConfig, BullMQWorkerSpec
from queuewatch.demo.celery_workload import CeleryConfig
from queuewatch.demo.embedded_redis import child_popen_options
from queuewatch.demo.workload import DEMO_WORKERS, WorkerSpec, WorkloadConfig, worker_argv

DEMO_INTERVAL_S = 5.0
WORKER_GRACE_S = 10.0
"""Longest a worker may take to finish its current job after SIGTERM (demo jobs run for at most ~7 s)."""
SERVICE_GRACE_S = 5.0
COLD_STOP_GRACE_S = 3.0
CELERY_WORKER_ROLE = "celery-worker"


class DemoError(RuntimeError):
    """A part of the demo could not be started."""


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
        """The RQ producer subprocess."""
        argv = [sys.executable, "-m", "queuewatch.demo.workload", "--redis", redis_url, *config.to_argv()]
        return self.spawn("workload", argv, stage=1, grace_s=SERVICE_GRACE_S)

    def start_bullmq(self, redis_url: str, config: BullMQConfig,
                     specs: Iterable[BullMQWorkerSpec] = BULLMQ_WORKERS) -> list[Child]:
        """The BullMQ worker processes (asyncio, Python bullmq) and the BullMQ producer."""
        workers = [self.spawn(spec.role,
                              bullmq_workload.worker_argv(spec, redis_url, f"demo-{spec.role}-{self.run_id}"),
                              stage=0, grace_s=WORKER_GRACE_S) for spec in specs]
        producer = self.spawn("bullmq-producer", bullmq_workload.producer_argv(redis_url, config), stage=1,
                              grace_s=SERVICE_GRACE_S)
        return [*workers, producer]

    def start_celery(self, redis_url: str, config: CeleryConfig) -> list[Child]:
        """The Celery worker (its prefork pool stops with it on SIGTERM) and the Celery producer."""
        worker = self.spawn(CELERY_WORKER_ROLE,
                            celery_workload.worker_argv(redis_url, f"demo-celery-{self.run_id}"),
                            stage=0, grace_s=WORKER_GRACE_S)
        producer = self.spawn("celery-producer", celery_workload.producer_argv(redis_url, config), stage=1,
                              grace_s=SERVICE_GRACE_S)
        return [worker, producer]

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

