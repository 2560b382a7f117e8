"""Bad input gets one clear line and exit status 2 before any work; secrets never appear in messages."""
from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import REPO_ROOT, free_port

SECRET = "s3cret-pw"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """`queuewatch ARGS` as a real process started in REPO_ROOT."""
    return subprocess.run([sys.executable, "-m", "queuewatch.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout_s, env={**os.environ, **(env or {})})


def assert_one_line_refusal(result: subprocess.CompletedProcess, *fragments: str, status: int = 2) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e-9", "0", "-1", "0.05", "86401", "soon", ""])
def test_collect_refuses_a_bad_interval(tmp_path, value):
    db = tmp_path / "never.db"
    result = run_cli("collect", "--once", "--db", f"sqlite:///{db}", f"--interval={value}")
    assert_one_line_refusal(result, "--interval", "0.1 to 86400")
    assert not db.exists()  # refused before any cycle (and before the database is opened)


@pytest.mark.parametrize("value", ["nan", "inf", "1e-9x", "0", "-1", "text"])
def test_collect_refuses_a_bad_retention(tmp_path, value):
    result = run_cli("collect", "--once", "--db", f"sqlite:///{tmp_path / 'never.db'}", f"--retention-days={value}")
    assert_one_line_refusal(result, "--retention-days", "above 0")
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("variable,value,fragment", [
    ("QUEUEWATCH_INTERVAL_S", "nan", "0.1 to 86400"), ("QUEUEWATCH_INTERVAL_S", "1e-9", "0.1 to 86400"),
    ("QUEUEWATCH_INTERVAL_S", "inf", "0.1 to 86400"), ("QUEUEWATCH_INTERVAL_S", "x", "0.1 to 86400"),
    ("QUEUEWATCH_RETENTION_DAYS", "0", "above 0"), ("QUEUEWATCH_RETENTION_DAYS", "-1", "above 0"),
    ("QUEUEWATCH_RETENTION_DAYS", "nan", "above 0"), ("QUEUEWATCH_RETENTION_DAYS", "inf", "above 0"),
])
def test_collect_refuses_bad_environment_values(tmp_path, variable, value, fragment):
    result = run_cli("collect", "--once", "--db", f"sqlite:///{tmp_path / 'never.db'}", env={variable: value})
    assert_one_line_refusal(result, variable, fragment)
    assert not (tmp_path / "never.db").exists()


def test_interval_and_retention_at_their_limits_are_accepted():
    from config.settings import load_settings

    settings = load_settings(env={"QUEUEWATCH_INTERVAL_S": "0.1", "QUEUEWATCH_RETENTION_DAYS": "0.01"})
    assert settings.interval_s == 0.1 and settings.retention_days == 0.01
    assert load_settings(env={}, interval_s=86400.0).interval_s == 86400.0


@pytest.mark.parametrize("command", ["dashboard", "api", "demo"])
@pytest.mark.parametrize("port", ["0", "65536", "-1", "http", "80.5"])
def test_ports_are_checked(tmp_path, command, port):
    result = run_cli(command, "--db", f"sqlite:///{tmp_path / 'never.db'}", f"--port={port}")
    assert_one_line_refusal(result, "--port", "1 to 65535")


@pytest.mark.parametrize("command", [["collect", "--once"], ["api"]])
@pytest.mark.parametrize("url", [f"redis://:{SECRET}@127.0.0.1:notaport/0", f"http://:{SECRET}@127.0.0.1/0",
                                 f"redis://user:{SECRET}@[::1/0", f"redis://:{SECRET}@127.0.0.1:99999/0",
                                 f"redis://127.0.0.1:6379/0,redis://:{SECRET}@x:y/0"])
def test_a_malformed_redis_url_is_one_line_without_the_password(tmp_path, command, url):
    result = run_cli(*command, "--db", f"sqlite:///{tmp_path / 'q.db'}", "--redis", url)
    assert_one_line_refusal(result, "bad Redis URL")


def test_a_malformed_redis_url_in_the_environment_is_refused_too(tmp_path):
    result = run_cli("collect", "--once", "--db", f"sqlite:///{tmp_path / 'q.db'}",
                     env={"QUEUEWATCH_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:port/0"})
    assert_one_line_refusal(result, "bad Redis URL", "***")


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}@127.0.0.1:port/db", "nonsense"])
def test_a_malformed_database_url_is_one_line_without_the_password(url):
    result = run_cli("export", "--out", "-", "--db", url)
    assert_one_line_refusal(result, "not a database URL", status=1)


def test_an_unreachable_database_is_one_line_without_the_password():
    url = f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/db"
    result = run_cli("export", "--out", "-", "--db", url)
    assert_one_line_refusal(result, "cannot open database", "u:***@127.0.0.1", status=1)


class _Garbage(socketserver.BaseRequestHandler):
    """Answers every read with bytes that are not the Redis protocol, keeping the connection open."""

    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

    def handle(self) -> None:
        while self.request.recv(4096):
            self.request.sendall(self.reply)


class _Nonsense(_Garbage):
    reply = b"?not redis\r\n"


class _AgreesWithEverything(_Garbage):
    """Well-formed Redis replies that make no sense for the commands sent (+OK to each line)."""

    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(b"+OK\r\n" * max(1, data.count(b"\r\n") // 3))


@contextmanager
def not_redis(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def http_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _collect_for(redis_url: str, db_url: str, seconds: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "collect", "--redis", redis_url,
                             "--db", db_url, "--interval", "0.2"], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "QUEUEWATCH_BACKOFF_CAP_S": "1.6", "QUEUEWATCH_LIBRARIES": "rq,bullmq"})
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("server", ["garbage", "nonsense", "http", "ok-to-everything"])
def test_a_server_that_is_not_redis_is_an_outage_with_backoff(tmp_path, server):
    from sqlalchemy import select

    from storage.engine import make_engine
    from storage.schema import cycles

    handlers = {"garbage": _Garbage, "nonsense": _Nonsense, "ok-to-everything": _AgreesWithEverything}
    context = http_server() if server == "http" else not_redis(handlers[server])
    db_url = f"sqlite:///{tmp_path / 'q.db'}"
    with context as port:
        result = _collect_for(f"redis://:{SECRET}@127.0.0.1:{port}/0", db_url, 5.0)
    assert result.returncode == 0, result.stderr  # stopped by SIGTERM, not crashed
    assert "Traceback" not in result.stderr and SECRET not in result.stderr
    skipped = [line for line in result.stderr.splitlines() if "cycle skipped" in line]
    assert skipped and all("Redis unreachable (rq)" in line for line in skipped)
    raised = [line for line in result.stderr.splitlines() if "redis_unreachable opened" in line]
    assert len(raised) == 1  # one system alert for the one Redis URL (its id names no password)
    lines = [line for line in result.stderr.strip().splitlines() if "malformed value in Redis" not in line]
    # the start line, one per cycle, and the system alert's (and each bad key once)
    assert len(lines) == 1 + len(skipped) + len(raised)
    # backoff: 0.2 s doubling up to 1.6 s gives at most 0.4+0.8+1.6+1.6... in 5 s, i.e. far fewer than 25 cycles
    assert 3 <= len(skipped) <= 7, result.stderr
    with make_engine(db_url).connect() as conn:
        rows = conn.execute(select(cycles.c.ok, cycles.c.error)).all()
    assert rows and all(not ok and error.startswith("Redis unreachable") for ok, error in rows)
