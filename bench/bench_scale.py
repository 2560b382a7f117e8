"""Past one machine: 1,000 queues over 4 Redis instances, read by 2 collectors that share them on PostgreSQL.

Starts its own PostgreSQL cluster and 4 redis-servers on loopback, enqueues 750 RQ queues (rq's Queue.enqueue)
and 250 BullMQ queues (bullmq's Queue.add) spread evenly over the 4, then runs two collectors with leases
(2 Redis each, by fair share) for `--cycles` cycles each and prints: cycle wall time, round trips per Redis
per cycle, database write time per cycle, and the bytes one queue costs per day on PostgreSQL
(pg_total_relation_size of the snapshot partitions, their blobs, the rollups and the latest table, after a
VACUUM FULL so that only live rows count: bytes per stored snapshot x snapshots per day at a 10 s interval, plus
bytes per rollup row x the 1,608 rollup buckets of one queue per day).

Run: .venv/bin/python bench/bench_scale.py [--cycles 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import collector.loop as loop  # noqa: E402
from collector.alerting import redis_source  # noqa: E402
from collector.readers import build_readers, close_readers  # noqa: E402
from collector.sharing import Coordinator  # noqa: E402
from config.settings import load_settings  # noqa: E402
from sqlalchemy import text  # noqa: E402
from storage.engine import make_engine  # noqa: E402
from storage.leases import Member  # noqa: E402
from tests.collector.bullmq_helpers import add_jobs  # noqa: E402
from tests.conftest import start_postgres, start_redis_server  # noqa: E402

REDIS_COUNT = 4
RQ_QUEUES = 750
BULLMQ_QUEUES = 250
INTERVAL_S = 10.0
SAMPLES_PER_DAY = 86400 / INTERVAL_S
ROLLUP_ROWS_PER_DAY = 1440 + 144 + 24  # 1-minute, 10-minute and hourly buckets of one queue
MEASURED = ("queue_samples", "queue_sample_blobs", "queue_rollups", "queue_latest", "series")


def populate(urls: list[str]) -> None:
    """Each Redis: its share of RQ queues (2 waiting jobs each) and BullMQ queues (2 waiting, 1 delayed)."""
    from rq import Queue

    for index in range(RQ_QUEUES):
        client = redis.Redis.from_url(urls[index % REDIS_COUNT])
        queue = Queue(f"rq-{index:04d}", connection=client)
        for _ in range(2):
            queue.enqueue("tests.collector.rq_jobs.noop")
    for index in range(BULLMQ_QUEUES):
        add_jobs(urls[index % REDIS_COUNT], f"bull-{index:04d}", [({}, {}), ({}, {}), ({}, {"delay": 3_600_000})])


def relation_bytes(engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(  # a partitioned table's partitions, or a plain table itself
            "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(:name)), "
            "pg_total_relation_size(:name))"), {"name": name}).scalar_one())


def row_count(engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())


class Timed:
    """Wraps the collector's write_cycle to time each call."""

    def __init__(self, write):
        self.write, self.times_s = write, []

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.write(*args, **kwargs)
        finally:
            self.times_s.append(time.perf_counter() - started)


def counted_reads(collector: loop.Collector, per_target: dict[str, list[int]]) -> None:
    """Note each reader's round trips under its Redis."""
    for reader in collector.readers:
        original, target = reader.read, redis_source(getattr(reader, "client", None))

        def read(*args, _original=original, _target=target, **kwargs):
            reading = _original(*args, **kwargs)
            per_target.setdefault(_target, []).append(reading.round_trips)
            return reading
        reader.read = read


def run(cycles: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    servers = [start_redis_server(tmp) for _ in range(REDIS_COUNT)]
    urls = [url for _, url in servers]
    pg_url, stop_pg = start_postgres()
    try:
        started = time.perf_counter()
        populate(urls)
        populate_s = time.perf_counter() - started
        settings = load_settings(env={"QUEUEWATCH_LIBRARIES": "rq,bullmq"}, redis_url=",".join(urls),
                                 db_url=pg_url, interval_s=INTERVAL_S)
        engine = make_engine(pg_url)
        timed = Timed(loop.write_cycle)
        loop.write_cycle = timed
        collectors, round_trips = [], {}
        for name in ("bench-a", "bench-b"):
            readers = build_readers(settings)
            targets = sorted({redis_source(getattr(r, "client", None)) for r in readers})
            coordinator = Coordinator(engine, Member(name, "bench", 0), targets, INTERVAL_S)
            collector = loop.Collector(settings, engine, readers, coordinator=coordinator)
            counted_reads(collector, round_trips)
            collectors.append(collector)
        for _ in range(2):  # both registered, then each settles on its share
            for collector in collectors:
                collector.coordinator.acquire()
        shares = [sorted(c.coordinator.tokens) for c in collectors]
        assert sorted(t for share in shares for t in share) == sorted(urls), shares
        cycle_s: list[float] = []
        queues_read = []
        for _ in range(cycles):
            for collector in collectors:
                t0 = time.perf_counter()
                result = collector.run_cycle(set(collector.coordinator.tokens))
                cycle_s.append(time.perf_counter() - t0)
                assert result.ok, result.error
                queues_read.append(result.queue_count)
        written_bytes = sum(relation_bytes(engine, name) for name in MEASURED)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in MEASURED:  # live rows only: the updated rollup and latest rows left dead versions
                conn.execute(text(f"VACUUM FULL {name}"))
        samples = row_count(engine, "queue_samples")
        raw_bytes = relation_bytes(engine, "queue_samples") + relation_bytes(engine, "queue_sample_blobs")
        rollup_rows = row_count(engine, "queue_rollups")
        rollup_bytes = relation_bytes(engine, "queue_rollups")
        latest_bytes = relation_bytes(engine, "queue_latest") + relation_bytes(engine, "series")
        for collector in collectors:
            close_readers(collector.readers)
        engine.dispose()
    finally:
        stop_pg()
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=10)
    queues = RQ_QUEUES + BULLMQ_QUEUES
    per_sample_b = raw_bytes / samples
    per_rollup_b = rollup_bytes / rollup_rows
    per_queue_day_b = per_sample_b * SAMPLES_PER_DAY + per_rollup_b * ROLLUP_ROWS_PER_DAY
    return {
        "queues": queues, "redis": REDIS_COUNT, "collectors": 2, "cycles_per_collector": cycles,
        "populate_s": round(populate_s, 1), "queues_per_cycle": statistics.median(queues_read),
        "cycle_wall_ms_median": round(statistics.median(cycle_s) * 1000, 1),
        "cycle_wall_ms_max": round(max(cycle_s) * 1000, 1),
        "round_trips_per_redis_per_cycle": sorted({sum(values) // cycles for values in round_trips.values()}),
        "db_write_ms_median": round(statistics.median(timed.times_s) * 1000, 1),
        "db_write_ms_max": round(max(timed.times_s) * 1000, 1),
        "mb_before_vacuum": round(written_bytes / 1e6, 1), "samples_stored": samples,
        "raw_bytes_per_sample": round(per_sample_b, 1), "rollup_bytes_per_row": round(per_rollup_b, 1),
        "latest_bytes_per_queue": round(latest_bytes / queues, 1),
        "bytes_per_queue_per_day": round(per_queue_day_b),
        "mb_per_1000_queues_per_day": round(per_queue_day_b * 1000 / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="cycles per collector (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = run(args.cycles)
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:34} {value}")


if __name__ == "__main__":
    main()
