"""Load on a real `queuewatch api` (uvicorn subprocess) over the 7-day bench database, on loopback only.

    .venv/bin/python bench/bench_api_load.py [--db PATH] [--duration-s 20] [--max-requests 6000] [--workers 1]

Run bench/bench_history.py first (it leaves its database in the temp folder). This script adds an admin
user and token to that database, starts its own redis-server (the rate limiter's) and the API with the
per-user rate limit raised out of the way, then measures over a mix of the nine endpoints:

- max_rps: 16 keep-alive connections sending back to back, at most `--max-requests` or `--duration-s`;
- p99 at 50 req/s: requests sent open-loop every 20 ms for `--duration-s`, latency counted from the
  scheduled send time (so queueing counts).

Meanwhile a thread stores a cycle every 10 s (each queue's newest figures carried forward through
snapshot_row and write_cycle), as a running collector would, so the data stays current.

The last line printed is one JSON object of the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from itertools import cycle
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accounts.accounts import add_user, issue_token  # noqa: E402
from core import alert_rules  # noqa: E402
from core.derive import QueueWindow, snapshot_row  # noqa: E402
from core.health import ThresholdSet  # noqa: E402
from core.model import Cursor, QueueReading  # noqa: E402
from storage.queries_latest import latest_snapshots  # noqa: E402
from storage.writer import CycleRecord, write_cycle  # noqa: E402
from storage.engine import make_engine  # noqa: E402
from storage.queries_alerts import list_alerts  # noqa: E402

API = "/api/admin/queue-system"
DEFAULT_DB = Path(tempfile.gettempdir()) / "queuewatch-bench-history" / "history-7d-28q-20j.db"
CONNECTIONS = 16
RATE_PER_S = 50.0
START_WITHIN_S = 60.0
COLLECT_EVERY_S = 10.0
UNFINISHED_AFTER_S = 60.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoint_mix(queue: str, alert_id: str) -> list[tuple[str, str]]:
    """The nine endpoints, (method, path), in the order the load cycles through them."""
    return [("GET", f"{API}/health"), ("GET", f"{API}/dashboard"), ("GET", f"{API}/queues/health"),
            ("GET", f"{API}/queues/{queue}/metrics"), ("GET", f"{API}/queues/{queue}/metrics?history=true"),
            ("GET", f"{API}/alerts"), ("POST", f"{API}/alerts/{alert_id}/acknowledge"),
            ("GET", f"{API}/workers/memory"), ("GET", f"{API}/memory/current"),
            ("GET", f"{API}/queues/{queue}/execution-stats")]


class Connection:
    """One keep-alive HTTP/1.1 connection to the API (plain asyncio streams, little client overhead)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str) -> int:
        """Status of one request; a kept-alive connection the server closed meanwhile is opened again."""
        try:
            return await self._request(method, path)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            return await self._request(method, path)

    async def _request(self, method: str, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
                          f"Content-Length: 0\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def endpoint_latency(port: int, token: str, mix: list[tuple[str, str]], repeat: int = 5) -> dict[str, float]:
    """Median ms of each endpoint alone (one connection, `repeat` requests after one), to tell which is slow."""
    connection = Connection(port, token)
    figures = {}
    try:
        for method, path in mix:
            await connection.request(method, path)
            runs = []
            for _ in range(repeat):
                started = time.perf_counter()
                await connection.request(method, path)
                runs.append((time.perf_counter() - started) * 1000.0)
            figures[f"{method} {path.removeprefix(API)}"] = round(float(np.median(runs)), 1)
    finally:
        connection.close()
    return figures


def _counts(statuses: list[int]) -> dict[str, int]:
    return {str(code): statuses.count(code) for code in sorted(set(statuses))}


async def max_throughput(port: int, token: str, mix: list[tuple[str, str]], max_requests: int,
                         duration_s: float) -> dict[str, float | int]:
    """Requests per second with CONNECTIONS clients sending back to back."""
    calls = cycle(mix)
    statuses: list[int] = []
    deadline = time.perf_counter() + duration_s

    async def client() -> None:
        connection = Connection(port, token)
        try:
            while len(statuses) < max_requests and time.perf_counter() < deadline:
                statuses.append(await connection.request(*next(calls)))
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    elapsed_s = time.perf_counter() - started
    return {"max_rps": round(len(statuses) / elapsed_s, 1), "max_rps_requests": len(statuses),
            "max_rps_statuses": _counts(statuses)}


async def paced_latency(port: int, token: str, mix: list[tuple[str, str]], rate_per_s: float,
                        duration_s: float) -> dict[str, float | int]:
    """Latency percentiles of open-loop requests at `rate_per_s`, measured from their scheduled time."""
    idle: list[Connection] = []
    latencies_ms: list[float] = []
    statuses: list[int] = []
    calls = cycle(mix)

    async def one(scheduled: float, call: tuple[str, str]) -> None:
        connection = idle.pop() if idle else Connection(port, token)
        statuses.append(await connection.request(*call))
        latencies_ms.append((time.perf_counter() - scheduled) * 1000.0)
        idle.append(connection)

    count = int(rate_per_s * duration_s)
    start = time.perf_counter() + 0.05
    tasks = []
    for index in range(count):
        scheduled = start + index / rate_per_s
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(scheduled, next(calls))))
    _, pending = await asyncio.wait(tasks, timeout=UNFINISHED_AFTER_S)
    for task in pending:  # counted as unfinished; p99 is then null when more than 1 % did not finish
        task.cancel()
    for connection in idle:
        connection.close()
    if len(pending) > count / 100 or not latencies_ms:
        return {"rate_per_s": rate_per_s, "paced_requests": count, "paced_unfinished": len(pending),
                "p50_ms_at_50rps": None, "p99_ms_at_50rps": None}
    values = np.array(latencies_ms + [UNFINISHED_AFTER_S * 1000.0] * len(pending))
    return {"rate_per_s": rate_per_s, "paced_requests": count,
            "p50_ms_at_50rps": round(float(np.percentile(values, 50)), 2),
            "p99_ms_at_50rps": round(float(np.percentile(values, 99)), 2),
            "max_ms_at_50rps": round(float(values.max()), 2),
            "paced_statuses": _counts(statuses), "paced_unfinished": len(pending)}


def collect_cycle(engine) -> None:
    """One cycle of every queue stored, carrying its newest figures forward, through the collector's path
    (so the API serves current data and its per-cycle cache turns over during the load)."""
    now_s = time.time()
    newest = latest_snapshots(engine, current_within_s=None)
    rows, breaches = [], {}
    for old in newest.to_dict("records"):
        reading = QueueReading(old["queue_name"], old["library"], int(old["waiting"]), int(old["active"]),
                               int(old["delayed"]), 0, int(old["failed"]), int(old["completed"]), now_s - 1.0,
                               Cursor(now_s, now_s))
        row, breaches[old["queue_name"]], _ = snapshot_row(reading, QueueWindow(), now_s=now_s,
                                                           interval_s=COLLECT_EVERY_S,
                                                           memory_usage_mb=old["memory_usage_mb"],
                                                           thresholds=ThresholdSet())
        rows.append(row)
    write_cycle(engine, CycleRecord(now_s - 0.05, now_s, 3, rows),
                lambda open_rows: alert_rules.plan(open_rows, breaches, now_s))


def _collect_until(engine, stop: threading.Event) -> None:
    while not stop.wait(COLLECT_EVERY_S):
        collect_cycle(engine)


def _wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the API exited during start-up")
        try:
            httpx.get(url + "/docs", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the API did not start in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="bench database (from bench_history.py)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="longest time of each phase")
    parser.add_argument("--max-requests", type=int, default=6000, help="most requests of the throughput phase")
    parser.add_argument("--workers", type=int, default=1, help="API server processes (`queuewatch api --workers`)")
    args = parser.parse_args()
    if not args.db.exists():
        print(f"{args.db} not found: run bench/bench_history.py first", file=sys.stderr)
        return 2
    db_url = f"sqlite:///{args.db}"
    engine = make_engine(db_url)
    email = f"load-{int(time.time())}@example.com"
    add_user(engine, email, "ADMIN", "a long bench password")
    token, _ = issue_token(engine, email)
    open_alerts = list_alerts(engine, open_only=False, acknowledged=None, limit=1)
    alert_id = open_alerts[0]["id"] if open_alerts else "alert-none"
    collect_cycle(engine)
    stop = threading.Event()
    collector = threading.Thread(target=_collect_until, args=(engine, stop), daemon=True)
    redis_port, api_port = _free_port(), _free_port()
    redis_server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                                     "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                    stdout=subprocess.DEVNULL)
    api = subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "api", "--port", str(api_port), "--db", db_url,
                            "--redis", f"redis://127.0.0.1:{redis_port}/0", "--workers", str(args.workers)],
                           env={**os.environ, "QUEUEWATCH_API_RATE_LIMIT": "100000000"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures: dict[str, object] = {"connections": CONNECTIONS, "workers": args.workers}
    try:
        _wait_until_up(f"http://127.0.0.1:{api_port}", api)
        collector.start()
        mix = endpoint_mix("queue-0000", alert_id)
        asyncio.run(max_throughput(api_port, token, mix, len(mix) * 3, 10.0))  # warm-up
        figures.update(asyncio.run(max_throughput(api_port, token, mix, args.max_requests, args.duration_s)))
        figures.update(asyncio.run(paced_latency(api_port, token, mix, RATE_PER_S, args.duration_s)))
        figures["endpoint_ms"] = asyncio.run(endpoint_latency(api_port, token, mix))
    finally:
        stop.set()
        for process in (api, redis_server):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    collector.join(30)
    engine.dispose()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
