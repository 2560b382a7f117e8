"""A full disk or a read-only database: the collector logs it, keeps running, stores nothing partial, resumes.

The full disk is a small tmpfs mounted for the test (root only); the read-only database is one whose files
the collector, run without CAP_DAC_OVERRIDE, may not write. The collector is the real CLI process reading a
real redis-server with real RQ jobs.
"""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from rq import Queue

from tests.collector import rq_jobs
from tests.collector.test_rq_reader import run_burst_worker
from tests.conftest import REPO_ROOT

QUEUE = "disk-bound"


def _mount(folder: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *options, str(folder)], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    """A 6 MB tmpfs folder (skipped, with the reason, where mounting is not permitted)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = _mount(folder, "-t", "tmpfs", "-o", "size=6m", "tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


class _Collector:
    """`queuewatch collect` as a real process; its log lines are gathered as they come."""

    def __init__(self, redis_url: str, db_url: str, wrapper: list[str] | None = None):
        env = {**os.environ, "QUEUEWATCH_LIBRARIES": "rq", "QUEUEWATCH_BACKOFF_CAP_S": "1"}
        self.proc = subprocess.Popen([*(wrapper or []), sys.executable, "-m", "queuewatch.cli", "collect", "--redis", redis_url,
                                      "--db", db_url, "--interval", "0.3"], cwd=REPO_ROOT, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, after: int = 0, timeout_s: float = 60) -> int:
        """Index of the first log line from `after` on that holds `text`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for index in range(after, len(self.lines)):
                if text in self.lines[index]:
                    return index
            assert self.proc.poll() is None, "\n".join(self.lines[-20:])
            time.sleep(0.1)
        raise AssertionError(f"no log line with {text!r} in {timeout_s} s:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return code


def _ok_cycles_since(db_path: Path, since_s: float) -> int:
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path, timeout=10) as conn:
        try:
            return conn.execute("SELECT count(*) FROM cycles WHERE ok AND started_at_s >= ?",
                                (since_s,)).fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet
            return 0


def _wait_for_ok_cycles(db_path: Path, since_s: float, count: int, collector: _Collector) -> None:
    deadline = time.monotonic() + 60
    while _ok_cycles_since(db_path, since_s) < count:
        assert collector.proc.poll() is None and time.monotonic() < deadline, "\n".join(collector.lines[-20:])
        time.sleep(0.2)


def _assert_nothing_partial(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        mismatched = conn.execute(
            "SELECT c.id, c.queue_count, (SELECT count(*) FROM queue_snapshots s WHERE s.cycle_id = c.id) "
            "FROM cycles c WHERE c.ok").fetchall()
        assert mismatched and all(expected == stored for _, expected, stored in mismatched)
        orphans = conn.execute("SELECT count(*) FROM queue_snapshots WHERE cycle_id NOT IN "
                               "(SELECT id FROM cycles)").fetchone()[0]
        assert orphans == 0


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; returns it."""
    filler = folder / "filler"
    chunk = b"\0" * 16384
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: closing has nothing left to write
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _waiting_stored(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as conn:
        return conn.execute("SELECT waiting FROM queue_snapshots WHERE queue_name = ? ORDER BY sampled_at_s DESC "
                            "LIMIT 1", (QUEUE,)).fetchone()[0]


def _start(redis_url: str, folder: Path) -> tuple[_Collector, Path, Queue]:
    client = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=client)
    for seconds in (0.01, 0.02, 0.03):
        queue.enqueue(rq_jobs.sleep_for, seconds)
    queue.enqueue(rq_jobs.fail)
    run_burst_worker(redis_url, QUEUE)
    queue.enqueue(rq_jobs.noop)
    db_path = folder / "q.db"
    collector = _Collector(redis_url, f"sqlite:///{db_path}")
    _wait_for_ok_cycles(db_path, 0.0, 3, collector)
    return collector, db_path, queue


def test_a_full_disk_is_logged_survived_and_left_behind(redis_url, small_fs):
    collector, db_path, queue = _start(redis_url, small_fs)
    try:
        filler = _fill(small_fs)
        for _ in range(5):
            queue.enqueue(rq_jobs.noop)
        full_at = collector.wait_for("database or disk is full")
        assert "database error, cycle not stored" in collector.lines[full_at]
        time.sleep(2)  # a few more failing cycles, with backoff
        assert collector.proc.poll() is None
        filler.unlink()
        freed_s = time.time()
        _wait_for_ok_cycles(db_path, freed_s, 2, collector)
        assert _waiting_stored(db_path) == queue.count == 6  # the jobs enqueued meanwhile are seen
    finally:
        assert collector.stop() == 0
    assert "Traceback" not in "\n".join(collector.lines)
    _assert_nothing_partial(db_path)


def test_a_read_only_database_is_logged_survived_and_left_behind(redis_url, tmp_path):
    """Started on database files that it may not write, the collector waits for them to become writable."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run the collector without CAP_DAC_OVERRIDE")
    collector, db_path, queue = _start(redis_url, tmp_path)
    assert collector.stop() == 0
    files = sorted(tmp_path.glob("q.db*"))
    for path in files:
        path.chmod(0o444)
    # root without CAP_DAC_OVERRIDE is bound by the file modes, like any other user
    collector = _Collector(redis_url, f"sqlite:///{db_path}",
                           ["setpriv", "--bounding-set=-dac_override", "--inh-caps=-dac_override"])
    try:
        queue.enqueue(rq_jobs.noop)
        failed_at = collector.wait_for("database error, cycle not stored")
        assert "readonly database" in collector.lines[failed_at]
        time.sleep(2)
        assert collector.proc.poll() is None
        for path in sorted(tmp_path.glob("q.db*")):  # the database and the WAL files SQLite made meanwhile
            path.chmod(0o644)
        writable_s = time.time()
        _wait_for_ok_cycles(db_path, writable_s, 2, collector)
        assert _waiting_stored(db_path) == queue.count == 2
    finally:
        assert collector.stop() == 0
    assert "Traceback" not in "\n".join(collector.lines)
    _assert_nothing_partial(db_path)
