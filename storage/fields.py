"""The spec's QueueMetrics field names and the snapshot columns they come from (API, CSV, dashboard)."""
from __future__ import annotations

QUEUE_METRICS_FIELDS: tuple[tuple[str, str], ...] = (
    ("queueName", "queue_name"),
    ("waiting", "waiting"),
    ("active", "active"),
    ("delayed", "delayed"),
    ("failed", "failed"),
    ("completed", "completed"),
    ("jobsPerMinute", "jobs_per_minute"),
    ("errorRate", "error_rate_pct"),
    ("timeoutRate", "timeout_rate_pct"),
    ("avgProcessingTimeMs", "avg_processing_ms"),
    ("p50ProcessingTimeMs", "p50_processing_ms"),
    ("p95ProcessingTimeMs", "p95_processing_ms"),
    ("p99ProcessingTimeMs", "p99_processing_ms"),
    ("oldestWaitingMs", "oldest_waiting_ms"),
    ("memoryUsageMB", "memory_usage_mb"),
    ("memoryPercentage", "memory_percentage"),
    ("timestamp", "sampled_at_s"),
)

# Figures beyond QueueMetrics that the collector also records, exported after the spec's fields.
EXTRA_SNAPSHOT_FIELDS: tuple[tuple[str, str], ...] = (
    ("library", "library"),
    ("status", "status"),
    ("scheduled", "scheduled"),
    ("deferred", "deferred"),
    ("p50WaitTimeMs", "p50_wait_ms"),
    ("p95WaitTimeMs", "p95_wait_ms"),
    ("p99WaitTimeMs", "p99_wait_ms"),
    ("finishedInInterval", "finished_delta"),
    ("failedInInterval", "failed_delta"),
    ("timeoutsInInterval", "timeout_delta"),
    ("intervalSeconds", "interval_s"),
)

# Fields whose unknown value is shown as 0 in QueueMetrics (the spec types them as numbers, never null).
ZERO_WHEN_UNKNOWN = frozenset({
    "avgProcessingTimeMs", "p50ProcessingTimeMs", "p95ProcessingTimeMs", "p99ProcessingTimeMs",
})
