"""History at any range: builds a history through the collector's write path and times the dashboard's and
the API's reads of it, beside the same series in Prometheus.

    .venv/bin/python bench/bench_history.py [--days 7] [--queues 28] [--jobs-per-snapshot 20] --json

Every queue gets `--days` of 10 s snapshots; the chart queue (queue-0000) alone goes on back to 30 days, so a
30-day chart reads a full 30 days while the build stays cheap (bench/history_build.py says how rows are made).
A second database holds 1,000 queues for 10 minutes, for the overview at that width. The last line printed
is one JSON object of the figures (ms are medians of repeated runs; null when not measured).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.history_build import (  # noqa: E402
    CHART_QUEUE, BuildStats, build_history, steady_cycle_ms_per_queue,
)
from bench.prometheus_compare import compare_with_prometheus  # noqa: E402
from storage import queries  # noqa: E402
from storage.engine import make_engine  # noqa: E402
from storage.executions import execution_stats  # noqa: E402
from storage.queries_export import write_csv  # noqa: E402

DAY_S = 86400.0
REPEAT = 5
WIDE_QUEUES = 1000
DEFAULT_DIR = Path(tempfile.gettempdir()) / "queuewatch-bench-history"


def median_ms(call: Callable[[], object], repeat: int = REPEAT) -> float:
    """Median wall time of `repeat` runs after one warm-up run."""
    call()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    return round(statistics.median(runs) * 1000.0, 2)


def chart_reads(engine, queue: str, since_s: float, until_s: float) -> None:
    """What one refresh of Queue detail's history reads: series, outages, whole-range timing."""
    queries.queue_series(engine, queue, since_s, until_s)
    queries.outages(engine, since_s, until_s)
    queries.range_timing(engine, queue, since_s, until_s)


def overview_reads(engine) -> None:
    """What one refresh of the Overview reads."""
    queries.latest_snapshots(engine)
    queries.dashboard_summary(engine)
    queries.system_figures(engine)


def _btree_bytes(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes per table (its indexes included) from dbstat, else from page counts; and rows per table."""
    conn = sqlite3.connect(path)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        try:
            sizes = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:  # no dbstat: the whole file shared by row counts below
            page = conn.execute("PRAGMA page_size").fetchone()[0] * conn.execute("PRAGMA page_count").fetchone()[0]
            sizes = [("queue_snapshots", page)]
        per_table: dict[str, int] = {}
        for name, size in sizes:
            table = owner.get(name, name)
            per_table[table] = per_table.get(table, 0) + int(size)
        rows = {table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
                for table in per_table if table in owner and not table.startswith("sqlite_")}
        return per_table, rows
    finally:
        conn.close()


QUEUE_FREE_TABLES = ("worker_snapshots", "host_snapshots", "users", "sessions", "api_tokens", "schema_version",
                     "login_attempts")


RAW_TABLE = "queue_samples"
BLOB_TABLE = "queue_sample_blobs"


def storage_figures(path: Path, stats: BuildStats) -> dict[str, float | None]:
    """bytes_per_raw_row: the snapshot table (its b-tree is its primary key index; pages, free space
    included) per row; sketch_bytes_per_raw_row: the table of each snapshot's sketches and recent
    executions, its index included; bytes_per_queue_day: every queue table and level (raw, sketches,
    rollups, latest) per queue-day."""
    per_table, rows = _btree_bytes(path)
    count = rows.get(RAW_TABLE) or 0
    queue_bytes = sum(size for table, size in per_table.items()
                      if not table.startswith(QUEUE_FREE_TABLES) and not table.startswith("sqlite_"))
    return {"bytes_per_raw_row": round(per_table[RAW_TABLE] / count, 1) if count else None,
            "sketch_bytes_per_raw_row": round(per_table.get(BLOB_TABLE, 0) / count, 1) if count else None,
            "bytes_per_queue_day": round(queue_bytes / stats.queue_days) if stats.queue_days else None}


def export_rate(engine, since_s: float, until_s: float) -> float:
    """Rows per second of the snapshot CSV export (every queue, the newest day)."""
    started = time.perf_counter()
    written = write_csv(engine, io.StringIO(), kind="snapshots", since_s=since_s, until_s=until_s)
    return round(written / (time.perf_counter() - started))


def built(path: Path, reuse: bool, **options: Any) -> tuple[Any, BuildStats, float]:
    """The history database at `path`: built now, or with `reuse` the one an earlier run built there."""
    saved = path.with_name(path.name + ".build.json")
    if reuse and path.exists() and saved.exists():
        figures = json.loads(saved.read_text())
        return make_engine(f"sqlite:///{path}"), BuildStats(**figures["stats"]), figures["newest_s"]
    engine, stats, newest_s = build_history(path, **options)
    saved.write_text(json.dumps({"stats": dataclasses.asdict(stats), "newest_s": newest_s}))
    return engine, stats, newest_s


def run(days: float, queue_count: int, jobs_per_snapshot: int, folder: Path, reuse: bool = False) -> dict[str, Any]:
    path = folder / f"history-{days:g}d-{queue_count}q-{jobs_per_snapshot}j.db"
    engine, stats, newest_s = built(path, reuse, days=days, queues=queue_count, jobs_per_snapshot=jobs_per_snapshot)
    print(f"built {path} in {stats.build_s:.0f} s: {stats.cycles:,} cycles, {stats.queue_rows:,} queue rows",
          flush=True)
    figures: dict[str, Any] = {"queues": queue_count, "days": days, "jobs_per_snapshot": jobs_per_snapshot}
    for span_days in (1, 7, 30):  # one pass over every range first: a viewer's steady state, caches warm
        chart_reads(engine, CHART_QUEUE, newest_s - span_days * DAY_S, newest_s)
    for label, span_days in (("chart_1d_ms", 1), ("chart_7d_ms", 7), ("chart_30d_ms", 30)):
        figures[label] = median_ms(lambda s=span_days: chart_reads(engine, CHART_QUEUE, newest_s - s * DAY_S,
                                                                    newest_s))
    figures["percentiles_7d_ms"] = median_ms(lambda: queries.range_percentiles(
        engine, CHART_QUEUE, newest_s - 7 * DAY_S, newest_s))
    figures["overview_ms"] = median_ms(lambda: overview_reads(engine))
    figures["execution_stats_ms"] = median_ms(lambda: execution_stats(engine, CHART_QUEUE))
    figures["export_rows_per_s"] = export_rate(engine, newest_s - DAY_S, newest_s)
    figures.update(storage_figures(path, stats))
    figures["build_cycle_ms_per_queue"] = round(stats.cycle_ms_per_queue, 3)
    newest_stored_s = max(queries.newest_sample_at_s(engine) or 0.0, time.time())  # other benchmarks' cycles too
    figures["cycle_ms_per_queue"] = round(steady_cycle_ms_per_queue(
        engine, queues=queue_count, jobs_per_snapshot=jobs_per_snapshot, after_s=newest_stored_s), 3)
    figures["build_s"] = round(stats.build_s, 1)
    figures.update(compare_with_prometheus(engine, CHART_QUEUE, newest_s - min(days, 7) * DAY_S, newest_s,
                                           folder / "prometheus"))
    engine.dispose()
    wide, _, _ = built(folder / "history-1000q.db", reuse, days=600 / DAY_S, queues=WIDE_QUEUES,
                       jobs_per_snapshot=jobs_per_snapshot, long_days=0.0, template_cycles=6)
    figures["overview_1000q_ms"] = median_ms(lambda: overview_reads(wide))
    wide.dispose()
    figures["database"] = str(path)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7.0, help="days of history of every queue")
    parser.add_argument("--queues", type=int, default=28, help="number of queues")
    parser.add_argument("--jobs-per-snapshot", type=int, default=20,
                        help="timed jobs per snapshot of a busy queue (at least; every other queue is busy)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line (always last)")
    parser.add_argument("--reuse", action="store_true",
                        help="read the databases an earlier run with the same options built (no rebuild)")
    args = parser.parse_args()
    figures = run(args.days, args.queues, args.jobs_per_snapshot, DEFAULT_DIR, reuse=args.reuse)
    if not args.json:
        for key, value in figures.items():
            print(f"{key:<28} {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
