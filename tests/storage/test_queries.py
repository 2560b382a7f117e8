from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from collector.celery_reader import TIMING_FIELDS
from core.derive import MEMORY_FIELDS, QueueWindow, snapshot_row
from core.health import Thresholds, ThresholdSet
from core.model import Cursor, FinishedJob, QueueReading
from core.sketch import Sketch, merge_blobs
from storage import queries, queries_sketch
from storage.fields import QUEUE_METRICS_FIELDS
from storage.writer import CycleRecord, acknowledge_alert, write_cycle
from tests.conftest import REPO_ROOT
from tests.percentiles import nearest_rank
from tests.seed import BULLMQ_TIER_COUNTS, UNAVAILABLE, seed_database
from tests.storage import test_queries_workers
from tests.storage.queries_helpers import HOUR_S, ISO_MS, METRIC_NAMES, NOW_S




def test_iso_times_and_bucket_widths():
    assert queries.iso_utc(NOW_S) == "2025-10-19T12:00:00.000Z"
    assert queries.iso_utc(NOW_S + 0.0126) == "2025-10-19T12:00:00.013Z"
    assert queries.iso_utc(None) is None
    for span_s in (60, 3600, 6 * HOUR_S, 86400, 7 * 86400, 400 * 86400):
        width = queries.bucket_width_s(span_s)
        assert np.ceil(span_s / width) + 1 <= queries.MAX_POINTS
    assert queries.bucket_width_s(7 * 86400) == 600


def test_queue_list_and_unknown_queue(seeded):
    engine, _ = seeded
    listing = queries.queue_list(engine)
    assert listing["queue_name"].tolist() == ["celery", "emails", "notifications", "reports", "thumbnails"]
    assert listing["library"].tolist() == ["celery", "rq", "bullmq", "rq", "rq"]
    assert set(listing["last_seen_at_s"]) == {NOW_S}
    assert queries.queue_list(engine, libraries=["rq"])["queue_name"].tolist() == ["emails", "reports",
                                                                                  "thumbnails"]
    assert queries.queue_names(engine, libraries=["bullmq", "celery"]) == ["celery", "notifications"]
    assert queries.queue_exists(engine, "emails") and not queries.queue_exists(engine, "no-such-queue")
    assert queries.queue_series(engine, "no-such-queue", NOW_S - HOUR_S, NOW_S).empty
    timing = queries.range_timing(engine, "no-such-queue", NOW_S - HOUR_S, NOW_S)
    assert timing["processing"]["sampleCount"] == 0 and timing["histogram"].empty
    assert queries.current_queue_metrics(engine, "no-such-queue") is None
    assert queries.queue_metrics_history(engine, "no-such-queue") == []


def test_queue_metrics_has_the_spec_fields_in_order(seeded):
    engine, _ = seeded
    metrics = queries.current_queue_metrics(engine, "reports")
    assert list(metrics) == METRIC_NAMES
    assert metrics["timestamp"] == "2025-10-19T12:00:00.000Z" and ISO_MS.match(metrics["timestamp"])
    assert metrics["waiting"] == 260 and isinstance(metrics["waiting"], int)
    assert metrics["jobsPerMinute"] == pytest.approx(24.0)
    row = {column: None for _, column in QUEUE_METRICS_FIELDS}
    row.update(queue_name="idle", waiting=0, active=0, delayed=0, failed=0, completed=0, jobs_per_minute=0.0,
               error_rate_pct=0.0, timeout_rate_pct=0.0, oldest_waiting_ms=0.0, memory_usage_mb=0.0,
               memory_percentage=0.0, sampled_at_s=NOW_S)
    idle = queries.queue_metrics(row)
    assert [idle[k] for k in ("avgProcessingTimeMs", "p50ProcessingTimeMs", "p95ProcessingTimeMs",
                              "p99ProcessingTimeMs")] == [0.0] * 4
    history = queries.queue_metrics_history(engine, "reports", limit=5)
    assert len(history) == 5 and history[0]["timestamp"] > history[-1]["timestamp"]


def test_health_statuses(seeded):
    engine, _ = seeded
    health = {h["queueName"]: h for h in queries.health_statuses(engine)}
    assert list(health["emails"]) == ["queueName", "healthy", "status", "issues", "metrics", "timestamp"]
    assert health["emails"]["healthy"] is True and health["emails"]["status"] == "healthy"
    assert health["reports"]["status"] == "warning" and health["reports"]["healthy"] is False
    assert "Queue depth above warning threshold (260 > 200)" in health["reports"]["issues"]
    assert health["thumbnails"]["status"] == "critical"
    assert "Worker memory usage above critical threshold (1850MB > 1024MB)" in health["thumbnails"]["issues"]


def test_dashboard_summary(seeded):
    engine, seed = seeded
    summary = queries.dashboard_summary(engine)
    assert list(summary) == ["totalQueues", "healthyQueues", "warningQueues", "criticalQueues",
                             "totalWaiting", "totalActive", "totalFailed", "activeAlerts", "avgJobsPerMinute",
                             "avgErrorRate", "timestamp"]
    # The seed's BullMQ and Celery queues are healthy: two more queues, both healthy.
    assert (summary["totalQueues"], summary["healthyQueues"], summary["warningQueues"],
            summary["criticalQueues"]) == (5, 3, 1, 1)
    assert summary["totalWaiting"] == sum(seed.waiting[q][-1] for q in seed.queues)
    assert summary["totalActive"] == 2 + 3 + 4 + 2 + 3
    # The Celery queue (task events off) measures no rates, so the means are over the other four queues.
    assert summary["avgJobsPerMinute"] == pytest.approx((60 + 24 + 120 + 36) / 4, abs=0.01)
    assert summary["avgErrorRate"] == pytest.approx(10 / 4, abs=0.01)
    assert summary["totalFailed"] == queries.current_queue_metrics(engine, "thumbnails")["failed"]
    assert summary["timestamp"] == "2025-10-19T12:00:00.000Z"
    open_alerts = queries.list_alerts(engine)
    assert summary["activeAlerts"] == len(open_alerts) == 5
    acknowledge_alert(engine, open_alerts[0]["id"], "ops@example.com", NOW_S + 1)
    assert queries.dashboard_summary(engine)["activeAlerts"] == 4


def test_downsampling_caps_points_and_keeps_sums(seeded):
    engine, seed = seeded
    snapshots = len(seed.sampled_at_s["thumbnails"])
    intervals = sum(len(values) for values in seed.processing_ms["thumbnails"]) / 20
    for max_points in (10, 50, 2000):
        series = queries.queue_series(engine, "thumbnails", NOW_S - HOUR_S, NOW_S, max_points=max_points)
        assert 0 < len(series) <= max_points
        assert series["samples"].sum() == snapshots
        assert series["finished_delta"].sum() == 18 * intervals
        assert series["failed_delta"].sum() == 2 * intervals
    week = queries.queue_series(engine, "thumbnails", NOW_S - 7 * 86400, NOW_S)
    assert week.attrs["bucket_width_s"] == 600 and len(week) <= 2000
    spike = queries.queue_series(engine, "reports", NOW_S - HOUR_S, NOW_S, max_points=10)
    assert spike["waiting"].max() == 1500  # depths are the bucket's peak


def test_throughput_and_rates_come_from_summed_deltas(seeded):
    engine, seed = seeded
    series = queries.queue_series(engine, "thumbnails", NOW_S - HOUR_S, NOW_S, max_points=13)
    ended = series["finished_delta"] + series["failed_delta"]
    assert np.allclose(series["jobs_per_minute"], ended / series["interval_s"] * 60.0)
    assert np.allclose(series["jobs_per_minute"], 120.0)  # 20 jobs per 10 s, the gap's jobs counted after it
    assert np.allclose(series["error_rate_pct"], series["failed_delta"] / ended * 100.0)
    assert np.allclose(series["error_rate_pct"], 10.0) and np.allclose(series["timeout_rate_pct"], 5.0)
    after_outage = series[series["interval_s"] > series["samples"] * 10.0 + 1e-6]
    assert len(after_outage) == 1 and seed.outage is not None
    assert after_outage.iloc[0]["finished_delta"] > 18 * after_outage.iloc[0]["samples"]


def test_bucket_percentiles_merge_sketches(seeded):
    engine, seed = seeded
    series = queries.queue_series(engine, "emails", NOW_S - HOUR_S, NOW_S, max_points=40)
    width = series.attrs["bucket_width_s"]
    checked = 0
    for row in series.itertuples():
        raw = seed.raw_processing("emails", row.bucket_start_s, row.bucket_start_s + width - 1e-6)
        if len(raw) < 100:
            continue
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert getattr(row, f"{name}_processing_ms") == pytest.approx(nearest_rank(raw, q), rel=0.0101)
        assert row.avg_processing_ms == pytest.approx(np.mean(raw), rel=1e-9)
        checked += 1
    assert checked >= 10


def test_range_percentiles_equal_raw_percentiles_within_one_percent(seeded):
    engine, seed = seeded
    since_s, until_s = NOW_S - 40 * 60, NOW_S
    raw = seed.raw_processing("reports", since_s, until_s)
    figures = queries.range_percentiles(engine, "reports", since_s, until_s)["processing"]
    assert figures["sampleCount"] == len(raw)
    assert figures["min"] == pytest.approx(min(raw)) and figures["max"] == pytest.approx(max(raw))
    assert figures["avg"] == pytest.approx(np.mean(raw), rel=1e-9)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert figures[name] == pytest.approx(nearest_rank(raw, q), rel=0.0101)
        assert figures[name] == pytest.approx(float(np.quantile(raw, q)), rel=0.015)


def test_vectorised_merging_equals_merge_blobs():
    rng = np.random.default_rng(3)
    blobs, groups = [], []
    for index in range(400):
        values = rng.lognormal(5, 1.5, int(rng.integers(0, 30)))
        values[:2] = 0.0 if index % 9 == 0 else values[:2]
        blobs.append(Sketch().extend(values).to_bytes() if len(values) else (None if index % 2 else b""))
        groups.append(index // 37)
    summary = queries_sketch.grouped_summary(blobs, groups, [0.0, 0.5, 0.95, 0.99, 1.0])
    for group, row in summary.iterrows():
        expected = merge_blobs(b for b, g in zip(blobs, groups) if g == group)
        assert row["count"] == expected.count and row["min"] == expected.min and row["max"] == expected.max
        assert row["mean"] == pytest.approx(expected.mean, rel=1e-12)
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            assert row[f"q{q:g}"] == expected.quantile(q)
    merged, expected = queries_sketch.merge_all(blobs), merge_blobs(blobs)
    assert (merged.buckets, merged.count, merged.min, merged.max) == (expected.buckets, expected.count,
                                                                     expected.min, expected.max)
    assert queries_sketch.grouped_summary([None, b""], [1, 2], [0.5]).empty
    assert queries_sketch.merge_all([]).count == 0


def test_execution_histogram_counts_every_job(seeded):
    engine, seed = seeded
    timing = queries.range_timing(engine, "thumbnails", NOW_S - HOUR_S, NOW_S, bins=30)
    histogram = timing["histogram"]
    assert len(histogram) == 30
    jobs = sum(len(values) for values in seed.processing_ms["thumbnails"])
    assert histogram["count"].sum() == timing["processing"]["sampleCount"] == jobs
    assert np.allclose(histogram["lower_ms"].iloc[1:].to_numpy(), histogram["upper_ms"].iloc[:-1].to_numpy())


def test_outages_are_merged_into_spans(seeded):
    engine, seed = seeded
    spans = queries.outages(engine, NOW_S - HOUR_S, NOW_S)
    assert len(spans) == 1
    span = spans.iloc[0]
    assert span["failed_cycles"] == 2 and "Redis unreachable" in span["error"]
    assert span["started_at_s"] == pytest.approx(seed.outage[0])
    assert span["ended_at_s"] > seed.outage[1] - 10
    assert queries.outages(engine, NOW_S - 60, NOW_S).empty


def test_empty_database_gives_empty_results(engine, tmp_path):
    assert queries.queue_list(engine).empty and queries.queue_names(engine) == []
    assert queries.latest_snapshots(engine).empty and queries.health_statuses(engine) == []
    summary = queries.dashboard_summary(engine)
    assert summary["totalQueues"] == 0 and summary["activeAlerts"] == 0 and summary["timestamp"] is None
    assert queries.queue_series(engine, "q", 0, NOW_S).empty
    assert queries.range_timing(engine, "q", 0, NOW_S)["histogram"].empty
    assert queries.outages(engine, 0, NOW_S).empty
    assert queries.worker_table(engine, Thresholds()).empty
    assert queries.worker_memory_summary(engine, Thresholds())["totalWorkers"] == 0
    assert queries.worker_memory_series(engine, 0, NOW_S).empty
    assert queries.host_memory_series(engine, 0, NOW_S).empty
    assert queries.list_alerts(engine) == [] and queries.alert_history(engine).empty
    assert queries.alert_events_frame(engine).empty
    assert list(queries.snapshots_export(engine, None, 0, NOW_S).columns[:17]) == METRIC_NAMES
    assert queries.worker_memory_export(engine, 0, NOW_S).empty
    assert queries.alerts_export(engine, 0, NOW_S).empty
    out = tmp_path / "empty.csv"
    assert queries.write_csv(engine, out, since_s=0, until_s=NOW_S) == 0
    assert out.read_text().splitlines()[0].split(",")[:3] == ["queueName", "waiting", "active"]


def _write_celery(engine, queue_name: str, at_s: float, waiting: int, unavailable: frozenset[str],
                  jobs: int = 0) -> None:
    """One more cycle holding only a Celery queue; `jobs` finished jobs of 100 ms each."""
    finished = [FinishedJob(f"{queue_name}-{at_s}-{i}", False, False, at_s - 2, at_s - 1.1, at_s - 1.0)
                for i in range(jobs)]
    reading = QueueReading(queue_name, "celery", waiting, 1, 0, 0, 0, 0, None, Cursor(), jobs, 0, 0, finished)
    row, _, _ = snapshot_row(reading, QueueWindow(), now_s=at_s, interval_s=10.0, memory_usage_mb=0.0,
                             thresholds=ThresholdSet(), unavailable=unavailable)
    write_cycle(engine, CycleRecord(at_s - 0.5, at_s, 2, [row]), lambda open_rows: [])


def test_a_queue_name_shared_by_two_libraries(seeded):
    engine, seed = seeded
    _write_celery(engine, "emails", NOW_S + 10, 33, UNAVAILABLE["celery"])
    listing = queries.queue_list(engine)
    assert listing[listing["queue_name"] == "emails"]["library"].tolist() == ["celery", "rq"]
    latest = queries.latest_snapshots(engine).set_index(["library", "queue_name"])
    assert latest.loc[("celery", "emails"), "waiting"] == 33
    assert latest.loc[("rq", "emails"), "waiting"] == seed.waiting["emails"][-1]
    assert queries.queue_names(engine).count("emails") == 1
    # the newest Celery cycle held only `emails`: Celery no longer reports `celery`, which is stale now
    assert not latest.loc[("celery", "celery"), "current"]
    assert latest["current"].drop(("celery", "celery")).all()
    rq_emails = queries.current_queue_metrics(engine, "emails", library="rq")
    assert rq_emails["waiting"] == seed.waiting["emails"][-1]
    assert queries.current_queue_metrics(engine, "emails", library="celery")["waiting"] == 33
    assert queries.current_queue_metrics(engine, "emails")["waiting"] == 33  # any library: the newest row
    assert queries.latest_snapshot(engine, "emails", library="rq")["library"] == "rq"
    assert queries.queue_exists(engine, "emails", library="celery")
    assert not queries.queue_exists(engine, "emails", library="bullmq")
    span = (NOW_S - HOUR_S, NOW_S + 10)
    rq_only = queries.queue_series(engine, "emails", *span, library="rq")
    assert rq_only["samples"].sum() == len(seed.sampled_at_s["emails"]) and rq_only.attrs["unavailable"] == ()
    both = queries.queue_series(engine, "emails", *span)
    assert both["samples"].sum() == len(seed.sampled_at_s["emails"]) + 1
    assert queries.queue_series(engine, "emails", *span, library="celery")["samples"].sum() == 1
    assert queries.range_timing(engine, "emails", *span, library="celery")["processing"]["sampleCount"] == 0
    assert queries.range_timing(engine, "emails", *span, library="rq")["processing"]["sampleCount"] == sum(
        len(values) for values in seed.processing_ms["emails"])
    assert len(queries.queue_metrics_history(engine, "emails", limit=3, library="celery")) == 1
    assert len(queries.snapshots_export(engine, ["emails"], *span, libraries=["celery"])) == 1


def test_unavailable_figures_are_missing_in_series_never_zero(seeded):
    engine, _ = seeded
    celery = queries.queue_series(engine, "celery", NOW_S - HOUR_S, NOW_S, library="celery")
    assert set(celery.attrs["unavailable"]) == UNAVAILABLE["celery"] | MEMORY_FIELDS  # no worker memory measured
    for column in ("failed", "completed", "jobs_per_minute", "error_rate_pct", "p95_processing_ms"):
        assert celery[column].isna().all(), column
    assert celery["waiting"].notna().all() and celery["delayed"].eq(2).all()
    bullmq = queries.queue_series(engine, "notifications", NOW_S - HOUR_S, NOW_S)
    assert bullmq.attrs["unavailable"] == () and bullmq["jobs_per_minute"].notna().all()
    # Task events switched on for the last two cycles: only failed and completed stay unavailable throughout.
    for at_s in (NOW_S + 10, NOW_S + 20):
        _write_celery(engine, "celery", at_s, 12, UNAVAILABLE["celery"] - TIMING_FIELDS, jobs=5)
    fine = queries.queue_series(engine, "celery", NOW_S - HOUR_S, NOW_S + 20)
    assert fine.attrs["unavailable"] == ("completed", "failed")
    assert fine["jobs_per_minute"].iloc[:-2].isna().all() and fine["jobs_per_minute"].iloc[-2:].notna().all()
    assert fine["failed"].isna().all()
    coarse = queries.queue_series(engine, "celery", NOW_S - HOUR_S, NOW_S + 20, max_points=3)
    assert coarse["jobs_per_minute"].iloc[-1] > 0  # a bucket mixing both kinds of snapshot measured it
    assert coarse["jobs_per_minute"].iloc[0] != coarse["jobs_per_minute"].iloc[0]  # NaN: never measured
    assert coarse.attrs["unavailable"] == ("completed", "failed")


def test_bullmq_details_are_parsed(seeded):
    engine, seed = seeded
    row = queries.latest_snapshot(engine, "notifications", library="bullmq")
    details = queries.bullmq_details(row)
    assert details.paused and details.stalled == 1 and details.throughput_source == "metrics"
    assert details.prefix == "bull" and not details.events_gap
    assert details.priority_counts == {**BULLMQ_TIER_COUNTS, 5: seed.waiting["notifications"][-1] - 20}
    assert list(details.priority_counts) == [1, 3, 5, 7, 10]
    assert queries.bullmq_details(queries.latest_snapshot(engine, "emails")) is None
    assert queries.details_of({"details": "not json"}) == {} and queries.details_of({"details": None}) == {}
    stored = '{"priority_counts": {"3": 4, "99": 1}}'
    partial = queries.bullmq_details({"library": "bullmq", "details": stored})
    assert partial.priority_counts == {1: 0, 3: 4, 5: 0, 7: 0, 10: 0} and not partial.paused
    assert partial.stalled is None and partial.throughput_source is None


def test_storage_does_not_import_streamlit():
    code = "import sys, storage.queries, core.recycle; print('streamlit' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=True)
    assert result.stdout.strip() == "False"


def test_the_same_reads_on_postgres(pg_engine, tmp_path):
    seed = seed_database(pg_engine, NOW_S, hours=1.0)
    seeded = (pg_engine, seed)
    test_queue_list_and_unknown_queue(seeded)
    test_queue_metrics_has_the_spec_fields_in_order(seeded)
    test_health_statuses(seeded)
    test_downsampling_caps_points_and_keeps_sums(seeded)
    test_throughput_and_rates_come_from_summed_deltas(seeded)
    test_bucket_percentiles_merge_sketches(seeded)
    test_range_percentiles_equal_raw_percentiles_within_one_percent(seeded)
    test_outages_are_merged_into_spans(seeded)
    test_queries_workers.test_worker_table_states_and_recycle_flags(seeded)
    test_queries_workers.test_memory_series(seeded)
    test_queries_workers.test_snapshot_export_uses_the_spec_names(seeded, tmp_path)
    test_bullmq_details_are_parsed(seeded)
    test_queries_workers.test_library_filters_of_workers_and_exports(seeded, tmp_path)
    test_queries_workers.test_alert_filters_and_shape(seeded)
    test_a_queue_name_shared_by_two_libraries(seeded)
    test_unavailable_figures_are_missing_in_series_never_zero(seeded)
