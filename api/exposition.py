"""Prometheus metric families from the stored state (pure formatting of plain rows; no I/O)."""
from __future__ import annotations

from typing import Any, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from storage.fields import QUEUE_METRICS_FIELDS
from storage.queries_latest import unavailable_of

QUEUE_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("queuewatch_queue_waiting_jobs", "Jobs waiting in the queue", "waiting"),
    ("queuewatch_queue_active_jobs", "Jobs being processed", "active"),
    ("queuewatch_queue_delayed_jobs", "Scheduled and deferred jobs", "delayed"),
    ("queuewatch_queue_failed_jobs", "Jobs in the failed registry", "failed"),
    ("queuewatch_queue_completed_jobs", "Jobs in the finished registry", "completed"),
    ("queuewatch_queue_jobs_per_minute", "Jobs ended per minute over the last 60 s", "jobs_per_minute"),
    ("queuewatch_queue_error_rate_percent", "Failed jobs as % of ended jobs (5 min)", "error_rate_pct"),
    ("queuewatch_queue_timeout_rate_percent", "Timed-out jobs as % of ended jobs (5 min)", "timeout_rate_pct"),
    ("queuewatch_queue_oldest_waiting_seconds", "Age of the oldest waiting job", "oldest_waiting_s"),
    ("queuewatch_queue_memory_usage_megabytes", "Largest RSS among the queue's workers", "memory_usage_mb"),
)
STATUS_VALUES = ("healthy", "warning", "critical")
_FIELD_OF = {column: field for field, column in QUEUE_METRICS_FIELDS} | {"oldest_waiting_s": "oldestWaitingMs"}


def queue_families(rows: Iterable[dict[str, Any]]) -> list[Metric]:
    """Gauges per queue, processing/wait time quantiles, and a one-hot health status.

    A figure the queue's snapshot did not measure has no sample (absent, never 0).
    """
    rows = list(rows)
    families: list[Metric] = []
    unmeasured = [set(unavailable_of(row)) for row in rows]
    for name, doc, column in QUEUE_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=["queue", "library"])
        for row, skipped in zip(rows, unmeasured):
            if _FIELD_OF.get(column) in skipped:
                continue
            value = row["oldest_waiting_ms"] / 1000.0 if column == "oldest_waiting_s" else row[column]
            family.add_metric([row["queue_name"], row["library"]], float(value or 0.0))
        families.append(family)
    for kind in ("processing", "wait"):
        family = GaugeMetricFamily(f"queuewatch_queue_{kind}_time_seconds",
                                   f"{kind.capitalize()} time quantiles over the last 5 min",
                                   labels=["queue", "library", "quantile"])
        for row in rows:
            for quantile in ("50", "95", "99"):
                value = row.get(f"p{quantile}_{kind}_ms")
                if value is not None and value == value:
                    family.add_metric([row["queue_name"], row["library"], f"0.{quantile}"], value / 1000.0)
        families.append(family)
    status = GaugeMetricFamily("queuewatch_queue_status", "1 for the queue's current health status",
                               labels=["queue", "library", "status"])
    for row in rows:
        for value in STATUS_VALUES:
            status.add_metric([row["queue_name"], row["library"], value], 1.0 if row["status"] == value else 0.0)
    families.append(status)
    return families


def worker_families(rows: Iterable[dict[str, Any]]) -> list[Metric]:
    rss = GaugeMetricFamily("queuewatch_worker_rss_megabytes", "Resident memory of a worker on the collector's host",
                            labels=["worker", "queues", "host"])
    live = GaugeMetricFamily("queuewatch_worker_alive", "1 while the worker's heartbeat is current",
                             labels=["worker", "queues", "host"])
    jobs = GaugeMetricFamily("queuewatch_worker_jobs_processed", "Jobs the worker has processed since it started",
                             labels=["worker", "queues", "host"])
    for row in rows:
        labels = [row["worker_name"], row["queues"] or "", row["hostname"] or ""]
        live.add_metric(labels, 1.0 if row["alive"] else 0.0)
        jobs.add_metric(labels, float(row["jobs_processed"]))
        if row["rss_mb"] is not None and row["rss_mb"] == row["rss_mb"]:
            rss.add_metric(labels, float(row["rss_mb"]))
    return [rss, live, jobs]


CAPACITY_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("queuewatch_queue_arrival_rate_per_second", "Jobs arriving per second (ended + backlog growth, 5 min)",
     "arrival_per_s"),
    ("queuewatch_queue_completion_rate_per_second", "Jobs ended per second (5 min)", "completion_per_s"),
    ("queuewatch_queue_busy_workers", "Mean active jobs over the last 5 min", "busy_workers"),
    ("queuewatch_queue_workers_needed", "Fewest workers keeping the p95 wait under QUEUEWATCH_WAIT_TARGET_S "
     "(M/M/c, Erlang C)", "workers_needed"),
    ("queuewatch_queue_drain_seconds", "Seconds to empty the backlog at the current rates (absent while growing)",
     "drain_s"),
    ("queuewatch_queue_backlog_growing", "1 while arrivals keep up with or exceed completions and jobs wait",
     "growing"),
)


def capacity_families(rows: Iterable[dict[str, Any]]) -> list[Metric]:
    """Capacity gauges per queue (storage.queries_capacity.all_capacity rows); unmeasured figures are absent."""
    rows = list(rows)
    families: list[Metric] = []
    for name, doc, key in CAPACITY_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=["queue", "library"])
        for row in rows:
            value = row.get(key)
            if key == "growing":
                value = None if row.get("arrival_per_s") is None else float(bool(value))
            if value is not None:
                family.add_metric([row["queue_name"], row["library"]], float(value))
        families.append(family)
    return families


def alert_families(open_counts: Iterable[tuple[str, str, str, int]]) -> list[Metric]:
    """Open alerts per (queue, type, severity)."""
    family = GaugeMetricFamily("queuewatch_open_alerts", "Alerts open now", labels=["queue", "type", "severity"])
    for queue, alert_type, severity, count in open_counts:
        family.add_metric([queue, alert_type, severity], float(count))
    return [family]
