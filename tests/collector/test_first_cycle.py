"""Figures from the first cycle on: the recent past still in Redis, one percentile rule, restarts that change nothing."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import time

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from sqlalchemy import select

from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage import queries
from storage.engine import make_engine
from storage.executions import execution_stats
from storage.schema import alerts, queue_snapshots
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import redis_time_s, run_burst_worker, start_busy_worker
from tests.percentiles import nearest_rank

FAST_S, SLOW_S = 0.04, 1.5


def _collector(redis_url: str, db_url: str) -> Collector:
    config = load_settings(env={}, redis_url=redis_url, db_url=db_url)
    return Collector(config, make_engine(db_url), RQReader(redis.Redis.from_url(redis_url), settle_s=0))


def _rows(engine, queue_name: str) -> list[dict]:
    with engine.connect() as conn:
        statement = (select(queue_snapshots).where(queue_snapshots.c.queue_name == queue_name)
                     .order_by(queue_snapshots.c.sampled_at_s))
        return [dict(r) for r in conn.execute(statement).mappings()]


def _run_jobs(redis_client, redis_url: str, queue_name: str) -> list[Job]:
    """20 fast jobs, one slow one, 4 failures and 2 timeouts (27 jobs), run by a real RQ worker."""
    queue = Queue(queue_name, connection=redis_client)
    jobs = [queue.enqueue(rq_jobs.sleep_for, FAST_S) for _ in range(20)]
    jobs.append(queue.enqueue(rq_jobs.sleep_for, SLOW_S))
    jobs += [queue.enqueue(rq_jobs.fail) for _ in range(4)]
    jobs += [queue.enqueue(rq_jobs.sleep_for, 3, job_timeout=1) for _ in range(2)]
    run_burst_worker(redis_url, queue_name)
    return jobs


def _processing_ms(jobs: list[Job], redis_client) -> list[float]:
    """Each job's own ended_at - started_at, as RQ stored them, newest end first."""
    fetched = [Job.fetch(job.id, connection=redis_client) for job in jobs]
    fetched.sort(key=lambda job: job.ended_at, reverse=True)
    return [(job.ended_at - job.started_at).total_seconds() * 1000.0 for job in fetched]


def _assert_ordered(avg, p50, p95, p99, high):
    assert p50 <= p95 <= p99 <= high * (1 + 1e-9) and avg <= high * (1 + 1e-9)


def test_a_new_database_counts_and_times_the_jobs_still_held_in_redis(redis_url, redis_client, tmp_path):
    jobs = _run_jobs(redis_client, redis_url, "recent")
    durations_ms = _processing_ms(jobs, redis_client)
    collector = _collector(redis_url, f"sqlite:///{tmp_path / 'new.db'}")
    assert collector.run_cycle().ok  # the very first cycle of a brand-new database
    [row] = _rows(collector.engine, "recent")
    queue = Queue("recent", connection=redis_client)
    assert row["finished_delta"] == FinishedJobRegistry(queue=queue).get_job_count(cleanup=False) == 21
    assert row["failed_delta"] == FailedJobRegistry(queue=queue).get_job_count(cleanup=False) == 6
    assert row["timeout_delta"] == 2
    assert row["error_rate_pct"] == pytest.approx(6 / 27 * 100, abs=1e-3)
    assert row["timeout_rate_pct"] == pytest.approx(2 / 27 * 100, abs=1e-3)
    assert row["unavailable"] is None or "errorRate" not in row["unavailable"]
    assert row["interval_s"] == pytest.approx(300.0, abs=1.0)  # the span in which both registries are complete
    assert row["jobs_per_minute"] == pytest.approx(27 / row["interval_s"] * 60.0, rel=1e-3)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert row[f"{name}_processing_ms"] == pytest.approx(nearest_rank(durations_ms, q), rel=0.0101), name
    assert row["p99_processing_ms"] == pytest.approx(max(durations_ms), rel=0.0101)  # the slow job is the tail
    assert row["avg_processing_ms"] == pytest.approx(sum(durations_ms) / 27, abs=0.0005)  # stored to the µs
    _assert_ordered(row["avg_processing_ms"], row["p50_processing_ms"], row["p95_processing_ms"],
                    row["p99_processing_ms"], max(durations_ms))
    issues = row["issues"]
    assert "Error rate above critical threshold" in issues and "Timeout rate above critical threshold" in issues

    stats = execution_stats(collector.engine, "recent")
    assert stats["sampleCount"] == 27
    assert stats["recentExecutions"] == pytest.approx([round(d, 3) for d in durations_ms], abs=0.002)
    assert stats["p99"] == pytest.approx(nearest_rank(durations_ms, 0.99), rel=0.0101)
    _assert_ordered(stats["avg"], stats["p50"], stats["p95"], stats["p99"], stats["max"])
    now_s = redis_time_s(redis_client)
    timing = queries.range_timing(collector.engine, "recent", now_s - 3600, now_s + 60)
    assert int(timing["histogram"]["count"].sum()) == 27
    assert timing["processing"]["p95"] == pytest.approx(nearest_rank(durations_ms, 0.95), rel=0.0101)
    series = queries.queue_series(collector.engine, "recent", now_s - 3600, now_s + 60)
    point = series.dropna(subset=["p99_processing_ms"]).iloc[-1]
    assert point["p99_processing_ms"] == pytest.approx(max(durations_ms), rel=0.0101)
    _assert_ordered(point["avg_processing_ms"], point["p50_processing_ms"], point["p95_processing_ms"],
                    point["p99_processing_ms"], max(durations_ms))
    text = queries.export_csv_text(collector.engine, queues=["recent"], since_s=now_s - 3600, until_s=now_s + 60)
    [exported] = list(csv.DictReader(io.StringIO(text)))
    _assert_ordered(*(float(exported[f]) for f in ("avgProcessingTimeMs", "p50ProcessingTimeMs",
                                                   "p95ProcessingTimeMs", "p99ProcessingTimeMs")),
                    max(durations_ms))
    assert float(exported["errorRate"]) == pytest.approx(6 / 27 * 100, abs=1e-3)

    time.sleep(2.5)  # one more cycle, in a later chart point, in which no job ends
    assert collector.run_cycle().ok
    series = queries.queue_series(collector.engine, "recent", now_s - 600, now_s + 60)
    assert len(series) == 2 and series["error_rate_pct"].isna().tolist() == [False, True]  # not 0 %


def _copy_sqlite(source: str, target: str) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def test_a_restart_in_the_middle_of_a_window_changes_no_figure(redis_url, redis_client, tmp_path):
    _run_jobs(redis_client, redis_url, "steady")
    running = _collector(redis_url, f"sqlite:///{tmp_path / 'running.db'}")
    assert running.run_cycle().ok
    _copy_sqlite(str(tmp_path / "running.db"), str(tmp_path / "restarted.db"))
    restarted = _collector(redis_url, f"sqlite:///{tmp_path / 'restarted.db'}")  # a collector started anew

    queue = Queue("steady", connection=redis_client)
    time.sleep(1.1)  # registry scores are whole seconds: new failures must not share the counted second
    for _ in range(3):
        queue.enqueue(rq_jobs.fail)
    run_burst_worker(redis_url, "steady")
    assert running.run_cycle().ok and restarted.run_cycle().ok
    kept, resumed = _rows(running.engine, "steady")[-1], _rows(restarted.engine, "steady")[-1]
    assert kept["failed_delta"] == resumed["failed_delta"] == 3 and resumed["finished_delta"] == 0
    for column in ("avg_processing_ms", "p50_processing_ms", "p95_processing_ms", "p99_processing_ms",
                   "status", "issues", "unavailable"):
        assert resumed[column] == kept[column], column
    for column in ("error_rate_pct", "timeout_rate_pct"):  # the first span counts pro rata: ms apart, ~equal
        assert resumed[column] == pytest.approx(kept[column], rel=1e-3), column
    assert resumed["error_rate_pct"] == pytest.approx(9 / 30 * 100, rel=0.01)  # the first span counts pro rata
    assert resumed["jobs_per_minute"] == pytest.approx(kept["jobs_per_minute"], rel=0.02)

    def alert_rows(engine):
        with engine.connect() as conn:
            return sorted((r.id, r.severity, r.resolved_at_s) for r in conn.execute(select(alerts)))

    assert alert_rows(restarted.engine) == alert_rows(running.engine)
    assert all(resolved is None for _, _, resolved in alert_rows(restarted.engine))
    assert len(alert_rows(restarted.engine)) == 2  # error and timeout rate: opened once, kept open


def test_waiting_jobs_without_a_live_worker_are_a_health_issue(redis_url, redis_client, tmp_path):
    queue = Queue("backlog", connection=redis_client)
    busy = queue.enqueue(rq_jobs.sleep_for, 30)
    for _ in range(3):
        queue.enqueue(rq_jobs.noop)
    collector = _collector(redis_url, f"sqlite:///{tmp_path / 'backlog.db'}")
    worker = start_busy_worker(redis_url, redis_client, "backlog", busy.id)
    try:
        assert collector.run_cycle().ok
        served = _rows(collector.engine, "backlog")[-1]
        assert served["waiting"] == 3 and "No live worker" not in served["issues"]
        assert served["status"] == "healthy"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker dies without unregistering
        worker.wait(timeout=10)
    assert collector.run_cycle().ok
    orphaned = _rows(collector.engine, "backlog")[-1]
    assert json.loads(orphaned["issues"]) == ["No live worker for 3 waiting jobs"]
    assert orphaned["status"] == "warning"
