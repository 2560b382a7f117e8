"""Cycle cost of the BullMQ reader: the first read's keyspace scan vs steady cycles, small vs large keyspace.

Run: .venv/bin/python bench/bench_bullmq.py [--cycles 20] [--queues 28]

Fills two databases of a throw-away redis-server with the same queues (waiting ids, prioritized and
delayed entries, 100 completed and 20 failed jobs with hashes, metrics counters, an events stream) plus
1,000 vs 1,000,000 unrelated keys, then prints round trips and median milliseconds of: the first read
(full SCAN of the keyspace), steady cycles (cursors passed on, nothing new), sampling cycles (cursors at 0:
all 120 finished jobs per queue sampled) and events cycles (1,000 new events per queue read from `:events`).

Measured on the development VM (2 vCPU, redis-server 7.0.15, redis-py 8.1.0), 28 queues, 10 cycles:

| padding keys | first read (scan) | steady | sampling | events |
|---:|---:|---:|---:|---:|
| 1,000 | 8 trips / 29 ms | 3 / 21 ms | 3 / 155 ms | 3 / 368 ms |
| 1,000,000 | 1007 trips / 671 ms | 3 / 13 ms | 3 / 122 ms | 3 / 548 ms |

Only the first read depends on the keyspace; reading events costs about 15 us per entry on the client side.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.bullmq_layout import ThroughputState
from collector.bullmq_reader import BullMQReader
from core.model import Cursor
from collector.roundtrips import CountingRedis
from tests.conftest import start_redis_server

PADDING = (1_000, 1_000_000)
WAITING_PER_QUEUE = 1_000
FINISHED, FAILED = 100, 20
EVENTS_PER_QUEUE = 1_000


def fill(client: redis.Redis, queues: int, padding: int) -> None:
    """`queues` BullMQ queues and `padding` unrelated keys."""
    client.flushdb()
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for start in range(0, padding, 10_000):
        pipe.mset({f"other:{i}": "x" for i in range(start, min(padding, start + 10_000))})
        pipe.execute()
    for q in range(queues):
        base = f"bull:bench-{q:02d}"
        pipe.hset(f"{base}:meta", "opts.maxLenEvents", 10_000)
        pipe.rpush(f"{base}:wait", *(f"w{i}" for i in range(WAITING_PER_QUEUE)))
        pipe.hset(f"{base}:w0", mapping={"timestamp": now_ms - 60_000, "delay": 0})
        pipe.zadd(f"{base}:prioritized", {f"p{i}": (i % 10 + 1) * 2 ** 32 + i for i in range(50)})
        pipe.zadd(f"{base}:delayed", {f"d{i}": (now_ms + 3_600_000) * 4096 + i for i in range(20)})
        for i in range(FINISHED + FAILED):
            failed = i >= FINISHED
            job_id = f"f{i}"
            pipe.zadd(f"{base}:{'failed' if failed else 'completed'}", {job_id: now_ms - 10_000 + i})
            pipe.hset(f"{base}:{job_id}", mapping={"timestamp": now_ms - 20_000, "delay": 0,
                                                   "processedOn": now_ms - 15_000, "finishedOn": now_ms - 10_000 + i,
                                                   **({"failedReason": "timed out"} if failed else {})})
        pipe.hset(f"{base}:metrics:completed", "count", FINISHED)
        pipe.hset(f"{base}:metrics:failed", "count", FAILED)
        for i in range(EVENTS_PER_QUEUE):
            pipe.xadd(f"{base}:events", {"event": "completed" if i % 4 == 3 else "active", "jobId": f"e{i}"})
        pipe.execute()


def timed(reader: BullMQReader, cursors: dict[str, Cursor]) -> tuple[int, float, object]:
    started = time.perf_counter()
    reading = reader.read(cursors)
    return reading.round_trips, (time.perf_counter() - started) * 1000.0, reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--queues", type=int, default=28)
    args = parser.parse_args()
    proc, url = start_redis_server(Path(tempfile.mkdtemp(prefix="bench-bullmq-")))
    try:
        print(f"{args.queues} queues, {args.cycles} cycles per figure; round trips / median ms")
        print("padding keys | first read (scan) | steady | sampling | events")
        for db, padding in enumerate(PADDING):
            client = CountingRedis.from_url(url.rsplit("/", 1)[0] + f"/{db}")
            fill(client, args.queues, padding)
            reader = BullMQReader(client)
            first_trips, first_ms, reading = timed(reader, {})
            steady = {q.queue_name: q.cursor for q in reading.queues}
            zero_metrics = ThroughputState("metrics", 0, 0, None).to_text()
            sampling = {name: Cursor(0.0, 0.0, zero_metrics) for name in steady}
            events = {name: Cursor(c.finished_score, c.failed_score, ThroughputState("events").to_text())
                      for name, c in steady.items()}
            figures = []
            for cursors in (steady, sampling, events):
                runs = [timed(reader, cursors) for _ in range(args.cycles)]
                assert len({trips for trips, _, _ in runs}) == 1
                figures.append(f"{runs[0][0]} / {statistics.median(ms for _, ms, _ in runs):.1f}")
            print(f"{padding:>12,} | {first_trips} / {first_ms:.1f} | " + " | ".join(figures))
            client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
