"""Worker, alert and export queries on the seeded database."""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from core.derive import MEMORY_FIELDS
from core.health import Thresholds, ThresholdSet
from storage import queries
from storage.fields import EXTRA_SNAPSHOT_FIELDS
from storage.writer import acknowledge_alert
from tests.seed import UNAVAILABLE
from tests.storage.queries_helpers import ALERT_KEYS, HOUR_S, ISO_MS, METRIC_NAMES, NOW_S


def test_recycle_rule():
    limits = ThresholdSet()
    assert queries.recycle_reasons(999, 3600.0, 500.0, limits) == []
    assert queries.recycle_verdict(1243, None, None, limits) == (True, "Job limit reached: 1243 jobs >= 1000")
    assert queries.recycle_reasons(0, 4.5 * 3600, None, limits) == ["Uptime limit reached: 4.5h >= 4h"]
    assert queries.recycle_reasons(0, None, 1850.0, limits) == [
        "Critical memory limit exceeded: 1850MB > 1024MB"]
    assert queries.recycle_reasons(0, None, 1024.0, limits) == []


def test_worker_table_states_and_recycle_flags(seeded):
    engine, _ = seeded
    workers = queries.worker_table(engine, Thresholds()).set_index("worker_name")
    assert workers.loc["worker-old-1", "status"] == "stale"
    assert workers.loc["worker-gone-1", "status"] == "gone"
    assert workers.loc["worker-emails-1", "status"] == "busy"
    assert not workers.loc["worker-emails-1", "should_recycle"]
    assert workers.loc["worker-reports-1", "recycle_reason"] == "Job limit reached: 1243 jobs >= 1000"
    assert workers.loc["worker-asset-2", "recycle_reason"] == (
        "Uptime limit reached: 5.0h >= 4h; Critical memory limit exceeded: 1850MB > 1024MB")
    recent = queries.worker_table(engine, Thresholds(), seen_since_s=NOW_S - 600)
    assert "worker-gone-1" not in set(recent["worker_name"])
    summary = queries.worker_memory_summary(engine, Thresholds())
    # Four current RQ workers plus the seed's BullMQ worker (agent memory) and Celery worker (memory unknown).
    assert summary["totalWorkers"] == 6 and summary["workersNeedingRecycle"] == 2
    assert summary["averageMemoryUsage"] == pytest.approx((300 + 600 + 1850 + 420) / 4, abs=0.1)
    asset = next(w for w in summary["workers"] if w["workerId"] == "worker-asset-2")
    assert list(asset) == ["workerId", "queueName", "jobsProcessed", "startTime", "lastMemoryCheck",
                           "shouldRecycle", "recycleReason"]
    assert list(asset["lastMemoryCheck"]) == ["heapUsed", "heapTotal", "external", "rss", "arrayBuffers",
                                              "percentage", "timestamp"]
    assert asset["lastMemoryCheck"]["rss"] == 1850.0
    assert "recycleReason" not in next(w for w in summary["workers"] if w["workerId"] == "worker-emails-1")


def test_memory_series(seeded):
    engine, _ = seeded
    memory = queries.worker_memory_series(engine, NOW_S - HOUR_S, NOW_S, max_points=30)
    assert set(memory["worker_name"]) == {"worker-emails-1", "worker-reports-1", "worker-asset-2",
                                          "worker-gone-1", "bull-worker-1"}
    assert memory.groupby("worker_name").size().max() <= 30
    assert memory.loc[memory["worker_name"] == "worker-asset-2", "rss_mb"].eq(1850.0).all()
    host = queries.host_memory_series(engine, NOW_S - HOUR_S, NOW_S, max_points=30)
    assert 0 < len(host) <= 30 and host["total_mb"].eq(16000.0).all()


def test_alert_filters_and_shape(seeded):
    engine, _ = seeded
    open_unacknowledged = queries.list_alerts(engine)
    assert len(open_unacknowledged) == 5 and open_unacknowledged[0]["severity"] == "critical"
    assert all(list(a) == ALERT_KEYS for a in open_unacknowledged)
    assert all(ISO_MS.match(a["timestamp"]) for a in open_unacknowledged)
    assert {a["queueName"] for a in queries.list_alerts(engine, severity="critical")} == {"thumbnails"}
    reports = queries.list_alerts(engine, queue_name="reports")
    assert {a["type"] for a in reports} == {"queue_depth", "memory_usage"}
    depth = next(a for a in open_unacknowledged if a["type"] == "queue_depth")
    acknowledge_alert(engine, depth["id"], "ops@example.com", NOW_S + 5)
    acknowledged = queries.list_alerts(engine, acknowledged=True)
    assert [a["id"] for a in acknowledged] == [depth["id"]]
    assert acknowledged[0]["acknowledgedBy"] == "ops@example.com"
    assert acknowledged[0]["acknowledgedAt"] == "2025-10-19T12:00:05.000Z"
    assert len(queries.list_alerts(engine, acknowledged=None)) == 5
    assert len(queries.list_alerts(engine)) == 4
    history = queries.list_alerts(engine, acknowledged=None, open_only=False)
    assert len(history) == 6
    resolved = queries.alert_history(engine, since_s=NOW_S - HOUR_S, until_s=NOW_S)
    spike = resolved[resolved["state"] == "resolved"]
    assert len(spike) == 1 and spike.iloc[0]["severity"] == "critical" and spike.iloc[0]["value"] == 1500
    events = queries.alert_events_frame(engine, alert_id=spike.iloc[0]["id"])
    assert events["event"].tolist() == ["resolved", "opened"]
    assert queries.get_alert(engine, depth["id"])["acknowledged"] is True
    assert queries.get_alert(engine, "alert-0-nope-queue_depth") is None


def test_snapshot_export_uses_the_spec_names(seeded, tmp_path):
    engine, seed = seeded
    rows = queries.snapshots_export(engine, ["emails", "reports"], NOW_S - HOUR_S, NOW_S)
    names = METRIC_NAMES + [name for name, _ in EXTRA_SNAPSHOT_FIELDS] + ["unavailable"]
    assert list(rows.columns) == names
    assert list(rows.columns[:len(METRIC_NAMES)]) == METRIC_NAMES
    assert len(rows) == len(seed.sampled_at_s["emails"]) + len(seed.sampled_at_s["reports"])
    assert set(rows["queueName"]) == {"emails", "reports"} and rows["timestamp"].str.match(ISO_MS).all()
    out = tmp_path / "snapshots.csv"
    written = queries.write_csv(engine, out, kind="snapshots", queues=["emails"], since_s=NOW_S - HOUR_S,
                                until_s=NOW_S)
    with out.open() as handle:
        reader = csv.reader(handle)
        assert next(reader) == names
        assert sum(1 for _ in reader) == written == len(seed.sampled_at_s["emails"])
    text = queries.export_csv_text(engine, kind="workers", since_s=NOW_S - 60, until_s=NOW_S)
    assert text.splitlines()[0].startswith("timestamp,workerId,queueName")
    counts = queries.export_counts(engine, ["emails"], NOW_S - HOUR_S, NOW_S)
    assert counts["snapshots"] == written and counts["alerts"] == 0 and counts["workers"] > 0
    preview = queries.snapshots_export(engine, None, NOW_S - HOUR_S, NOW_S, limit=4)
    assert len(preview) == 4 and list(preview.columns) == names
    alerts = queries.alerts_export(engine, NOW_S - HOUR_S, NOW_S)
    assert list(alerts.columns[:9]) == ALERT_KEYS and len(alerts) == 6
    with pytest.raises(ValueError):
        queries.write_csv(engine, tmp_path / "x.csv", kind="nope", since_s=0, until_s=1)


def test_library_filters_of_workers_and_exports(seeded, tmp_path):
    engine, _ = seeded
    workers = queries.worker_table(engine, Thresholds(), libraries=["bullmq", "celery"])
    workers = workers.set_index("worker_name")
    assert sorted(workers.index) == ["bull-worker-1", "celery@worker-3"]
    assert workers.loc["bull-worker-1", "memory_source"] == "agent"
    assert pd.isna(workers.loc["celery@worker-3", "memory_source"])
    assert np.isnan(workers.loc["celery@worker-3", "rss_mb"])
    memory = queries.worker_memory_series(engine, NOW_S - HOUR_S, NOW_S, libraries=["bullmq", "celery"])
    assert set(memory["worker_name"]) == {"bull-worker-1"}  # unknown memory is left out, not drawn as 0
    snapshots = queries.snapshots_export(engine, None, NOW_S - HOUR_S, NOW_S, libraries=["bullmq"])
    assert set(snapshots["library"]) == {"bullmq"} and set(snapshots["queueName"]) == {"notifications"}
    exported = queries.worker_memory_export(engine, NOW_S - 60, NOW_S, libraries=["bullmq"])
    assert list(exported.columns[-2:]) == ["library", "memorySource"]
    assert set(exported["memorySource"]) == {"agent"}
    counts = queries.export_counts(engine, None, NOW_S - HOUR_S, NOW_S, libraries=["celery"])
    assert counts["alerts"] == 0 and counts["snapshots"] == len(
        queries.snapshots_export(engine, ["celery"], NOW_S - HOUR_S, NOW_S))
    assert queries.export_counts(engine, None, NOW_S - HOUR_S, NOW_S, libraries=["rq"])["alerts"] == 6
    assert queries.alert_queue_filter(engine, ["emails", "celery"], ["celery"]) == ["celery"]
    text = queries.export_csv_text(engine, kind="alerts", since_s=NOW_S - HOUR_S, until_s=NOW_S,
                                   libraries=["bullmq"])
    assert len(text.strip().splitlines()) == 1  # the header: the BullMQ queue has no alerts
    written = queries.write_csv(engine, tmp_path / "celery.csv", kind="snapshots", since_s=NOW_S - 60,
                                until_s=NOW_S, libraries=["celery"])
    with (tmp_path / "celery.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == written > 0 and {r["library"] for r in rows} == {"celery"}
    assert {r["failed"] for r in rows} == {r["jobsPerMinute"] for r in rows} == {""}  # not measured: empty
    assert {r["waiting"] for r in rows} <= {str(n) for n in range(12, 19)}  # whole numbers stay whole
    assert set(rows[0]["unavailable"].split(",")) == UNAVAILABLE["celery"] | MEMORY_FIELDS
