"""Cycle cost of the RQ reader: round trips and wall time, 28 queues holding 1,000 vs 1,000,000 waiting jobs.

Run: .venv/bin/python bench/bench_collector.py [--cycles 20]
"""
from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.model import Cursor  # noqa: E402
from collector.roundtrips import CountingRedis  # noqa: E402
from collector.rq_reader import RQReader  # noqa: E402
from tests.conftest import start_redis_server  # noqa: E402

QUEUE_COUNT = 28
TOTALS = (1_000, 1_000_000)
FINISHED_PER_QUEUE = 100
FAILED_PER_QUEUE = 20
RPUSH_CHUNK = 5_000
TIMEOUT_TRACEBACK = (b"Traceback (most recent call last):\n"
                     b"rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (1 seconds)\n")
TIMEOUT_TRACEBACK_B64 = base64.b64encode(zlib.compress(TIMEOUT_TRACEBACK)).decode()


def stamp(epoch_s: float) -> str:
    """An RQ timestamp string."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{int(epoch_s % 1 * 1e6):06d}Z"


def fill(client: redis.Redis, total_jobs: int) -> None:
    """28 queues sharing total_jobs waiting ids (a job hash at each head), registry entries, workers."""
    client.flushdb()
    now_s = time.time()
    pipe = client.pipeline(transaction=False)
    per_queue = total_jobs // QUEUE_COUNT
    for q in range(QUEUE_COUNT):
        name = f"bench-{q:02d}"
        pipe.sadd("rq:queues", f"rq:queue:{name}")
        head = f"head-{q}"
        pipe.hset(f"rq:job:{head}", mapping={"status": "queued", "origin": name,
                                             "enqueued_at": stamp(now_s - 60)})
        pipe.rpush(f"rq:queue:{name}", head)
        remaining = per_queue - 1 + (1 if q < total_jobs % QUEUE_COUNT else 0)
        start = 0
        while start < remaining:
            size = min(RPUSH_CHUNK, remaining - start)
            pipe.rpush(f"rq:queue:{name}", *(f"fake-{q}-{i}" for i in range(start, start + size)))
            start += size
            if len(pipe) >= 50:
                pipe.execute()
        for i in range(FINISHED_PER_QUEUE + FAILED_PER_QUEUE):
            failed = i >= FINISHED_PER_QUEUE
            job_id = f"{'x' if failed else 'f'}-{q}-{i}"
            ended_s = now_s - 30 + i * 0.01
            pipe.hset(f"rq:job:{job_id}", mapping={
                "status": "failed" if failed else "finished", "origin": name,
                "enqueued_at": stamp(ended_s - 2), "started_at": stamp(ended_s - 1),
                "ended_at": stamp(ended_s)})
            if failed:
                pipe.xadd(f"rq:results:{job_id}", {"type": 2, "exc_string": TIMEOUT_TRACEBACK_B64})
            pipe.zadd(f"rq:{'failed' if failed else 'finished'}:{name}", {job_id: int(ended_s) + 500})
        pipe.sadd("rq:workers", f"rq:worker:w{q}")
        pipe.hset(f"rq:worker:w{q}", mapping={
            "last_heartbeat": stamp(now_s), "birth": stamp(now_s - 3600), "queues": name, "state": "idle",
            "pid": "1", "hostname": "bench"})
    pipe.execute()


class Series:
    """Repeated reads of one database, as the collector makes them or always sampling everything."""

    def __init__(self, client: CountingRedis, *, sampling: bool) -> None:
        self.client = client
        self.sampling = sampling
        self.reader = RQReader(client, settle_s=0)
        zero = {f"bench-{q:02d}": Cursor(0.0, 0.0) for q in range(QUEUE_COUNT)}
        self.cursors = zero if sampling else {q.queue_name: q.cursor for q in self.reader.read({}).queues}
        self.times_ms: list[float] = []
        self.trips: set[int] = set()
        self.waiting = 0

    def cycle(self) -> None:
        """One timed read; checks what it counted."""
        before = self.client.round_trips
        started = time.perf_counter()
        reading = self.reader.read(self.cursors)
        self.times_ms.append((time.perf_counter() - started) * 1000)
        self.trips.add(self.client.round_trips - before)
        assert reading.round_trips == self.client.round_trips - before
        expected = (FINISHED_PER_QUEUE, FAILED_PER_QUEUE) if self.sampling else (0, 0)
        assert all((q.new_finished, q.new_timeouts) == expected for q in reading.queues)
        self.waiting = sum(q.waiting for q in reading.queues)
        if not self.sampling:
            self.cursors = {q.queue_name: q.cursor for q in reading.queues}

    def result(self) -> tuple[int, float]:
        """(round trips per cycle, median cycle ms); every cycle must cost the same round trips."""
        assert len(self.trips) == 1, self.trips
        return next(iter(self.trips)), statistics.median(self.times_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="cycles measured per size and mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis_server(Path(tmp))
        try:
            clients = [CountingRedis.from_url(f"{url.rsplit('/', 1)[0]}/{db}") for db in range(len(TOTALS))]
            for client, total in zip(clients, TOTALS):
                fill(client, total)
            modes = {sampling: [Series(client, sampling=sampling) for client in clients]
                     for sampling in (False, True)}
            for _ in range(args.cycles):
                for series in (*modes[False], *modes[True]):
                    series.cycle()
            for client in clients:
                client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    rows = []
    for i, total in enumerate(TOTALS):
        steady, sampling = modes[False][i], modes[True][i]
        assert steady.waiting == total, (steady.waiting, total)
        rows.append((total, *steady.result(), *sampling.result()))
    sampled = QUEUE_COUNT * (FINISHED_PER_QUEUE + FAILED_PER_QUEUE)
    print(f"{QUEUE_COUNT} queues, {QUEUE_COUNT} workers, median of {args.cycles} interleaved cycles; "
          f"'steady' = nothing new since the cursor, 'sampling' = {sampled:,} new finishes sampled per cycle")
    header = ("waiting jobs", "round trips", "steady ms", "round trips", "sampling ms")
    print(" | ".join(f"{h:>12}" for h in header))
    for total, steady_trips, steady_ms, sampling_trips, sampling_ms in rows:
        cells = [f"{total:>12,}", f"{steady_trips:>12}", f"{steady_ms:>12.2f}", f"{sampling_trips:>12}",
                 f"{sampling_ms:>12.2f}"]
        print(" | ".join(cells))
    small, big = rows
    print(" | ".join([f"{'1M/1k ratio':>12}", *(f"{b / s:>12.2f}" for s, b in zip(small[1:], big[1:]))]))


if __name__ == "__main__":
    main()
