"""Every read of the history database, in one place: plain dicts in the spec's shapes and pandas DataFrames.

The functions live in storage/queries_*.py by subject (latest state, series, workers, alerts, export); this
module is the one import the dashboard, the API and the CLI need. Nothing here imports streamlit.
"""
from __future__ import annotations

from storage.queries_alerts import (
    alert_dict, alert_events_frame, alert_history, get_alert, list_alerts, pending_breaches,
)
from storage.queries_common import CURRENT_WITHIN_S, MAX_POINTS, bucket_width_s, iso_utc
from storage.queries_details import BullMQDetails, bullmq_details, details_of
from storage.queries_export import (
    SNAPSHOT_EXPORT_FIELDS, alert_queue_filter, alerts_export, export_counts, export_csv_text,
    iter_snapshot_exports, snapshots_export, to_csv_text, worker_memory_export, write_csv,
)
from storage.queries_latest import (
    current_queue_metrics, dashboard_summary, health_statuses, latest_snapshot, latest_snapshots,
    newest_sample_at_s, open_alert_count, queue_exists, queue_health, queue_list, queue_metrics,
    queue_metrics_history, queue_names, system_figures, unavailable_of,
)
from storage.queries_series import (
    execution_histogram, outages, queue_series, range_percentiles, range_sketches, range_timing,
    sketch_histogram, sketch_summary,
)
from storage.queries_workers import (
    host_memory_series, memory_stats, worker_memory_series, worker_memory_state, worker_memory_summary,
    worker_table,
)
from core.recycle import recycle_reasons, recycle_verdict

__all__ = [
    "CURRENT_WITHIN_S", "MAX_POINTS", "SNAPSHOT_EXPORT_FIELDS", "BullMQDetails", "alert_dict",
    "alert_queue_filter",
    "alert_events_frame", "alert_history", "alerts_export", "bucket_width_s", "bullmq_details",
    "current_queue_metrics", "dashboard_summary", "details_of",
    "execution_histogram", "export_counts", "export_csv_text", "get_alert", "health_statuses",
    "host_memory_series", "iso_utc", "iter_snapshot_exports", "latest_snapshot", "latest_snapshots",
    "list_alerts",
    "pending_breaches",
    "memory_stats", "newest_sample_at_s", "open_alert_count", "outages", "queue_exists", "queue_health",
    "queue_list", "queue_metrics", "queue_metrics_history", "queue_names", "queue_series",
    "range_percentiles", "range_sketches", "range_timing", "recycle_reasons", "recycle_verdict",
    "sketch_histogram", "sketch_summary", "snapshots_export", "system_figures", "to_csv_text", "unavailable_of",
    "worker_memory_export",
    "worker_memory_series", "worker_memory_state", "worker_memory_summary", "worker_table", "write_csv",
]
