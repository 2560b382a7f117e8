"""Benchmark of the dashboard's reads on a week of history: 28 queues, a snapshot every 10 s (~1.7M rows).

    .venv/bin/python bench/bench_queries.py [--db /tmp/queuewatch-bench.db] [--rebuild]

Builds the database once (the collector's own write of queue rows, rollups included, many cycles per
transaction, small real sketches), then prints the
time of the 7-day downsampled chart query for one queue against a 1-hour one, the whole-range percentiles,
the latest-snapshot-per-queue query and the dashboard summary, with the number of points returned.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.sketch import Sketch  # noqa: E402
from storage import queries  # noqa: E402
from storage.engine import make_engine  # noqa: E402
from storage.schema import cycles, queue_samples  # noqa: E402
from storage.writer import write_queue_rows  # noqa: E402

QUEUES = 28
INTERVAL_S = 10.0
DAYS = 7
CYCLES_PER_BATCH = 2000
END_S = 1_760_875_200.0  # 2025-10-19T12:00:00Z


def _sketch_pool(rng: np.random.Generator, size: int = 64) -> list[bytes]:
    """Small real sketches of a few jobs each, reused across rows."""
    return [Sketch().extend(rng.lognormal(np.log(300), 0.6, int(rng.integers(1, 8)))).to_bytes()
            for _ in range(size)]


def build(path: Path) -> float:
    """Write the benchmark database; returns seconds taken."""
    started = time.perf_counter()
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    rng = np.random.default_rng(1)
    processing, wait = _sketch_pool(rng), _sketch_pool(rng)
    names = [f"queue-{i:02d}" for i in range(QUEUES)]
    steps = int(DAYS * 86400 / INTERVAL_S)
    start_s = END_S - (steps - 1) * INTERVAL_S
    cycle_sql = ("INSERT INTO cycles (id, started_at_s, finished_at_s, ok, error, round_trips, queue_count) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
    for batch_start in range(0, steps, CYCLES_PER_BATCH):
        cycle_rows, snapshot_rows = [], {}
        for step in range(batch_start, min(steps, batch_start + CYCLES_PER_BATCH)):
            at_s = start_s + step * INTERVAL_S
            cycle_id = step + 1
            cycle_rows.append((cycle_id, at_s - 0.3, at_s, 1, None, 40, QUEUES))
            for index, name in enumerate(names):
                waiting = int(50 + 40 * np.sin(step / 360.0 + index))
                finished, failed = 5 + index % 4, (step + index) % 7 == 0
                values = {
                    "queue_name": name, "library": "rq", "sampled_at_s": at_s,
                    "waiting": waiting, "active": 3, "delayed": 1, "scheduled": 1, "deferred": 0,
                    "failed": 10,
                    "completed": step * finished, "interval_s": INTERVAL_S, "finished_delta": finished,
                    "failed_delta": int(failed), "timeout_delta": 0,
                    "jobs_per_minute": 6.0 * (finished + failed),
                    "error_rate_pct": 1.0, "timeout_rate_pct": 0.0, "avg_processing_ms": 300.0,
                    "p50_processing_ms": 280.0, "p95_processing_ms": 700.0, "p99_processing_ms": 900.0,
                    "p50_wait_ms": 100.0, "p95_wait_ms": 300.0, "p99_wait_ms": 500.0,
                    "oldest_waiting_ms": 2000.0,
                    "memory_usage_mb": 300.0, "memory_percentage": 29.3, "status": "healthy", "issues": "[]",
                    "processing_sketch": processing[(step + index) % len(processing)],
                    "wait_sketch": wait[(step * 7 + index) % len(wait)],
                    "finished_cursor": at_s, "failed_cursor": at_s, "recent_processing_ms": "[310.5, 287.25]",
                }
                snapshot_rows.setdefault(cycle_id, []).append(values)
        with engine.begin() as conn:
            conn.exec_driver_sql(cycle_sql, cycle_rows)
            for cycle_id, rows in snapshot_rows.items():
                write_queue_rows(conn, rows, cycle_id)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


def _row_count(path: Path, table) -> int | None:
    """Rows of a table; None for a missing or empty file."""
    if not path.exists():
        return None
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar() or None
    finally:
        engine.dispose()


def timed(label: str, call: Callable[[], object], describe: Callable[[object], str], repeat: int = 3) -> None:
    """Run a query `repeat` times and print the first and the median run times."""
    runs = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        runs.append(time.perf_counter() - started)
    print(f"{label:<46} first {runs[0] * 1000:8.1f} ms   median {statistics.median(runs) * 1000:8.1f} ms   "
          f"{describe(result)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("/tmp/queuewatch-bench.db"),
                        help="benchmark database file")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the database even if it exists")
    args = parser.parse_args()
    if args.rebuild or _row_count(args.db, queue_samples) is None:
        cycle_count = int(DAYS * 86400 / INTERVAL_S)
        print(f"building {args.db} ({QUEUES} queues x {cycle_count:,} cycles)...", flush=True)
        print(f"built in {build(args.db):.1f} s")
    rows, cycle_count = _row_count(args.db, queue_samples), _row_count(args.db, cycles)
    engine = make_engine(f"sqlite:///{args.db}")
    print(f"{rows:,} queue snapshots, {cycle_count:,} cycles, {args.db.stat().st_size / 1e6:,.0f} MB\n")
    queue, week_s, hour_s = "queue-07", 7 * 86400.0, 3600.0

    def points(frame) -> str:
        return f"{len(frame):,} points of {frame.attrs['bucket_width_s']:g} s"

    timed("queue_series 7 d (depths, rates, p50/95/99)", lambda: queries.queue_series(
        engine, queue, END_S - week_s, END_S), points)
    timed("queue_series 1 h", lambda: queries.queue_series(engine, queue, END_S - hour_s, END_S), points)
    timed("range_timing 7 d (merged sketch + histogram)", lambda: queries.range_timing(
        engine, queue, END_S - week_s, END_S), lambda r: f"{r['processing']['sampleCount']:,} jobs")
    timed("range_timing 1 h", lambda: queries.range_timing(engine, queue, END_S - hour_s, END_S),
          lambda r: f"{r['processing']['sampleCount']:,} jobs")
    timed("latest_snapshots (latest per queue)", lambda: queries.latest_snapshots(engine),
          lambda f: f"{len(f)} queues")
    timed("dashboard_summary", lambda: queries.dashboard_summary(engine),
          lambda s: f"{s['totalQueues']} queues")
    timed("queue_names", lambda: queries.queue_names(engine), lambda n: f"{len(n)} names")
    timed("outages 7 d", lambda: queries.outages(engine, END_S - week_s, END_S), lambda f: f"{len(f)} spans")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
