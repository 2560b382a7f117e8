"""Tables of the history database (SQLAlchemy Core). Times are epoch seconds UTC (`*_at_s`)."""
from __future__ import annotations

from sqlalchemy import (
    DDL, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, PrimaryKeyConstraint,
    SmallInteger, String, Table, Text, UniqueConstraint, event,
)

metadata = MetaData()
legacy_metadata = MetaData()
"""Tables of versions 1 to 4 that version 5 replaced (kept so that migrations from scratch still run)."""
views_metadata = MetaData()
"""Views (created by the migrations, never by create_all)."""

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at_s", Float, nullable=False),
)

cycles = Table(
    "cycles", metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at_s", Float, nullable=False),
    Column("finished_at_s", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
    Column("round_trips", Integer, nullable=False, default=0),
    Column("queue_count", Integer, nullable=False, default=0),
    Index("ix_cycles_started_at_s", "started_at_s"),
)
# version 11: failed cycles (outages) of a range without walking the range's cycles; partial, so the newest
# successful cycle is still found by the primary key
FAILED_CYCLES_INDEX = Index("ix_cycles_failed_started", cycles.c.started_at_s,
                            sqlite_where=cycles.c.ok.is_(False), postgresql_where=cycles.c.ok.is_(False))

legacy_queue_snapshots = Table(
    "queue_snapshots", legacy_metadata,
    Column("id", Integer, primary_key=True),
    Column("cycle_id", Integer, ForeignKey(cycles.c.id, ondelete="CASCADE"), nullable=False),
    Column("queue_name", String(255), nullable=False),
    Column("library", String(16), nullable=False),
    Column("sampled_at_s", Float, nullable=False),
    # depths
    Column("waiting", Integer, nullable=False),
    Column("active", Integer, nullable=False),
    Column("delayed", Integer, nullable=False),
    Column("scheduled", Integer, nullable=False),
    Column("deferred", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
    # what happened since the previous snapshot (summable over any range)
    Column("interval_s", Float, nullable=False),
    Column("finished_delta", Integer, nullable=False),
    Column("failed_delta", Integer, nullable=False),
    Column("timeout_delta", Integer, nullable=False),
    # rates over the collector's sliding windows, as shown "now"
    Column("jobs_per_minute", Float, nullable=False),
    Column("error_rate_pct", Float, nullable=False),
    Column("timeout_rate_pct", Float, nullable=False),
    Column("avg_processing_ms", Float),
    Column("p50_processing_ms", Float),
    Column("p95_processing_ms", Float),
    Column("p99_processing_ms", Float),
    Column("p50_wait_ms", Float),
    Column("p95_wait_ms", Float),
    Column("p99_wait_ms", Float),
    Column("oldest_waiting_ms", Float, nullable=False),
    Column("memory_usage_mb", Float, nullable=False),
    Column("memory_percentage", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("issues", Text, nullable=False, default="[]"),
    # sketches of the jobs finished in this interval only (merge them for any range)
    Column("processing_sketch", LargeBinary),
    Column("wait_sketch", LargeBinary),
    Column("finished_cursor", Float),
    Column("failed_cursor", Float),
    # version 2: JSON list of this interval's processing times (ms), newest first, at most 100
    Column("recent_processing_ms", Text),
    # version 2: backend-specific resume state beyond the two scores (e.g. a stream id), opaque text
    Column("cursor_state", Text),
    # version 2: comma-separated QueueMetrics fields the backend could not measure (shown as unavailable)
    Column("unavailable", Text),
    # version 3: JSON of library-specific figures (BullMQ: paused, priority tiers, stalled, ...)
    Column("details", Text),
    Index("ix_queue_snapshots_queue_time", "queue_name", "sampled_at_s"),
    Index("ix_queue_snapshots_time", "sampled_at_s"),
)

worker_snapshots = Table(
    "worker_snapshots", metadata,
    Column("id", Integer, primary_key=True),
    Column("cycle_id", Integer, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("sampled_at_s", Float, nullable=False),
    Column("worker_name", String(255), nullable=False),
    Column("library", String(16), nullable=False),
    Column("queues", Text, nullable=False),
    Column("pid", Integer),
    Column("hostname", String(255)),
    Column("state", String(32), nullable=False),
    Column("alive", Boolean, nullable=False),
    Column("jobs_processed", Integer, nullable=False),
    Column("successful_jobs", Integer, nullable=False),
    Column("failed_jobs", Integer, nullable=False),
    Column("birth_at_s", Float),
    Column("last_heartbeat_at_s", Float),
    Column("memory_source", String(16)),  # "psutil" for workers on the collector's host, else NULL
    Column("rss_mb", Float),
    Column("heap_used_mb", Float),
    Column("heap_total_mb", Float),
    Column("external_mb", Float),
    Column("array_buffers_mb", Float),
    Column("memory_percentage", Float),
    Column("should_recycle", Boolean, nullable=False, default=False),
    Column("recycle_reason", Text),
    Index("ix_worker_snapshots_worker_time", "worker_name", "sampled_at_s"),
    Index("ix_worker_snapshots_time", "sampled_at_s"),
    Index("ix_worker_snapshots_cycle", "cycle_id"),  # version 5: the newest cycle's workers, cascades
)

host_snapshots = Table(
    "host_snapshots", metadata,
    Column("id", Integer, primary_key=True),
    Column("cycle_id", Integer, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("sampled_at_s", Float, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("total_mb", Float, nullable=False),
    Column("used_mb", Float, nullable=False),
    Column("available_mb", Float, nullable=False),
    Column("cached_mb", Float, nullable=False),
    Column("swap_used_mb", Float, nullable=False),
    Column("percentage", Float, nullable=False),
    Column("workers_rss_mb", Float, nullable=False),
    Column("collector_rss_mb", Float, nullable=False),
    Index("ix_host_snapshots_time", "sampled_at_s"),
    Index("ix_host_snapshots_cycle", "cycle_id"),  # version 5: cascades from cycles
)

alerts = Table(
    "alerts", metadata,
    Column("id", String(400), primary_key=True),
    Column("queue_name", String(255), nullable=False),
    Column("alert_type", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("opened_at_s", Float, nullable=False),
    Column("updated_at_s", Float, nullable=False),
    Column("resolved_at_s", Float),
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("acknowledged_by", String(320)),
    Column("acknowledged_at_s", Float),
    # version 6: the library of the queue (NULL for system alerts and alerts stored before version 6)
    Column("library", String(16)),
    # version 6: id of the active silence that matches the alert (NULL: not silenced), kept current each cycle
    Column("silenced_by", Integer),
    # version 6: an acknowledgement "for" a while ends here (NULL: for good); then it counts as unacknowledged
    Column("acknowledged_until_s", Float),
    Index("ix_alerts_open", "resolved_at_s", "queue_name", "alert_type"),
    Index("ix_alerts_opened_at_s", "opened_at_s"),
)

alert_events = Table(
    "alert_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", String(400), ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("at_s", Float, nullable=False),
    Column("event", String(16), nullable=False),  # opened escalated deescalated resolved acknowledged
    Column("severity", String(16), nullable=False),
    Column("value", Float),
    Column("actor", String(320)),
    Index("ix_alert_events_alert", "alert_id", "at_s"),
    Index("ix_alert_events_time", "at_s"),
)

# --- version 2: users, API tokens, delivery cursors -------------------------------------------------

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at_s", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_digest", String(64), nullable=False, unique=True),  # SHA-256 hex of the token
    Column("token_prefix", String(16), nullable=False),  # shown in listings to tell tokens apart
    Column("name", String(200)),
    Column("created_at_s", Float, nullable=False),
    Column("last_used_at_s", Float),
    Column("revoked_at_s", Float),
)

delivery_cursors = Table(
    "delivery_cursors", metadata,
    Column("consumer", String(64), primary_key=True),
    Column("last_alert_event_id", Integer, nullable=False),
)

# --- version 4: dashboard sessions and login attempts ----------------------------------------------

dashboard_sessions = Table(
    "dashboard_sessions", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at_s", Float, nullable=False),
    Column("last_seen_at_s", Float, nullable=False),  # last user action (auto-refreshes do not count)
    Column("expires_at_s", Float, nullable=False),  # absolute end, whatever the activity
    Column("revoked_at_s", Float),  # set by logging out
    Column("cookie_digest", String(64), unique=True),  # SHA-256 hex of the browser cookie's token
    Column("grant_digest", String(64), unique=True),  # one-time grant that the browser trades for the cookie
    Column("grant_expires_at_s", Float),
    Column("client_address", String(64)),
)

login_attempts = Table(
    "login_attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("at_s", Float, nullable=False),
    Column("email", String(320), nullable=False),  # as typed (lower-cased), known account or not
    Column("address", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_email", "email", "at_s"),
    Index("ix_login_attempts_address", "address", "at_s"),
)

VERSION_1_TABLES = (schema_version, cycles, legacy_queue_snapshots, worker_snapshots, host_snapshots, alerts,
                    alert_events)
VERSION_2_TABLES = (users, api_tokens, delivery_cursors)
VERSION_4_TABLES = (dashboard_sessions, login_attempts)

# --- version 5: series ids, snapshots clustered by (series, time), rollups, the latest row per queue -----------
# Times are integer epoch milliseconds (`*_at_ms`); figures the collector rounds to 3 decimals (rates, memory)
# are integer thousandths (`*_m`); durations are integer microseconds (`*_us`, since version 8: SQLite keeps a
# small integer in 1-4 bytes where a float takes 8); status is a code (STATUS_CODES). SQLite stores the clustered tables
# WITHOUT ROWID, so one queue's range is one contiguous run of pages.

STATUS_CODES = {"healthy": 0, "warning": 1, "critical": 2}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
MILLI_COLUMNS = ("jobs_per_minute", "error_rate_pct", "timeout_rate_pct", "memory_usage_mb", "memory_percentage")
"""Snapshot figures stored as integer thousandths under the name plus `_m`."""
TIMING_COLUMNS = ("avg_processing_ms", "p50_processing_ms", "p95_processing_ms", "p99_processing_ms",
                  "p50_wait_ms", "p95_wait_ms", "p99_wait_ms")
DEPTH_COLUMNS = ("waiting", "active", "delayed", "scheduled", "deferred", "failed", "completed")
DELTA_COLUMNS = ("finished_delta", "failed_delta", "timeout_delta")
MICRO_COLUMNS = TIMING_COLUMNS + ("oldest_waiting_ms",)
"""Snapshot durations (ms) stored as integer microseconds under the name with `_us` for `_ms` (version 8)."""


def micro_name(name: str) -> str:
    """The stored column of a duration in ms: `p95_wait_ms` -> `p95_wait_us`."""
    return f"{name[:-3]}_us"

series = Table(
    "series", metadata,
    Column("id", Integer, primary_key=True),
    Column("library", String(16), nullable=False),
    Column("queue_name", String(255), nullable=False),
    UniqueConstraint("queue_name", "library", name="uq_series_name"),
)


def _sample_columns() -> list[Column]:
    """The figures of one snapshot (shared by the raw table and the latest table)."""
    return [
        Column("cycle_id", Integer, nullable=False),
        *[Column(name, Integer, nullable=False) for name in DEPTH_COLUMNS],
        Column("interval_ms", Integer, nullable=False),
        *[Column(name, Integer, nullable=False) for name in DELTA_COLUMNS],
        *[Column(f"{name}_m", BigInteger, nullable=False) for name in MILLI_COLUMNS],
        *[Column(micro_name(name), BigInteger) for name in TIMING_COLUMNS],
        Column("oldest_waiting_us", BigInteger, nullable=False),
        Column("status", SmallInteger, nullable=False),
        Column("issues", Text),  # JSON list; NULL for none
        Column("unavailable", Text),
        Column("details", Text),
    ]


queue_samples = Table(
    "queue_samples", metadata,
    Column("series_id", Integer, nullable=False),
    Column("sampled_at_ms", BigInteger, nullable=False),
    *_sample_columns(),
    PrimaryKeyConstraint("series_id", "sampled_at_ms", name="pk_queue_samples"),
    sqlite_with_rowid=False,
)

queue_sample_blobs = Table(
    "queue_sample_blobs", metadata,
    Column("series_id", Integer, nullable=False),
    Column("sampled_at_ms", BigInteger, nullable=False),
    Column("processing_sketch", LargeBinary),  # sketches of the jobs finished in this interval only
    Column("wait_sketch", LargeBinary),
    Column("recent_processing_ms", Text),  # JSON list, newest first, at most 100
    PrimaryKeyConstraint("series_id", "sampled_at_ms", name="pk_queue_sample_blobs"),
)

queue_latest = Table(
    "queue_latest", metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("sampled_at_ms", BigInteger, nullable=False),
    *_sample_columns(),
    Column("finished_cursor", Float),
    Column("failed_cursor", Float),
    Column("cursor_state", Text),
)

ROLLUP_LEVELS_S = (60, 600, 3600)
queue_rollups = Table(
    "queue_rollups", metadata,
    Column("level_s", Integer, nullable=False),
    Column("series_id", Integer, nullable=False),
    Column("bucket_ms", BigInteger, nullable=False),  # start of the bucket: a multiple of level_s
    Column("samples", Integer, nullable=False),
    Column("first_at_ms", BigInteger, nullable=False),
    Column("last_at_ms", BigInteger, nullable=False),
    *[Column(name, Integer, nullable=False) for name in ("waiting", "active", "delayed", "failed", "completed")],
    Column("interval_ms", BigInteger, nullable=False),
    *[Column(name, BigInteger, nullable=False) for name in DELTA_COLUMNS],
    Column("oldest_waiting_ms", Float, nullable=False),
    Column("unavailable", Text),  # the fields no snapshot of the bucket measured (comma-separated)
    Column("processing_sketch", LargeBinary),  # merged sketches of the bucket's snapshots
    Column("wait_sketch", LargeBinary),
    PrimaryKeyConstraint("level_s", "series_id", "bucket_ms", name="pk_queue_rollups"),
    sqlite_with_rowid=False,
)

VERSION_5_TABLES = (series, queue_samples, queue_sample_blobs, queue_latest, queue_rollups)

queue_snapshots = Table(
    "queue_snapshots", views_metadata,
    *[Column(c.name, c.type) for c in legacy_queue_snapshots.c if c.name != "id"],
)
"""The view of version 5's tables under the snapshot columns of versions 1 to 4 (for reading)."""
event.listen(metadata, "before_drop", DDL("DROP VIEW IF EXISTS queue_snapshots"))  # it depends on the tables

# --- version 7: notification delivery log ------------------------------------------------------------

notification_deliveries = Table(
    "notification_deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("alert_id", String(400), nullable=False),  # no foreign key: the log outlives purged alerts
    Column("event", String(16), nullable=False),  # opened escalated acknowledged resolved repeat
    Column("feed_event_id", Integer),  # the alert_events row it follows; NULL for repeats
    Column("status", String(16), nullable=False),  # retrying delivered failed
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at_s", Float, nullable=False),
    Column("last_attempt_at_s", Float, nullable=False),
    Column("next_attempt_at_s", Float),  # while retrying
    Column("delivered_at_s", Float),
    Index("ix_notification_deliveries_alert", "channel", "alert_id", "delivered_at_s"),
    Index("ix_notification_deliveries_time", "created_at_s"),
)

VERSION_7_TABLES = (notification_deliveries,)

# --- version 6: alert timers and silences ---------------------------------------------------------

alert_rule_states = Table(
    "alert_rule_states", metadata,
    Column("queue_name", String(400), primary_key=True),  # a queue, or a system alert's scope
    Column("alert_type", String(32), primary_key=True),
    Column("pending_since_s", Float),  # breaching without an alert since then (NULL: not pending)
    Column("clear_since_s", Float),  # the open alert's condition is clear since then (NULL: not clear)
    Column("severity", String(16)),  # the newest pending breach's figures, shown on the Alerts page
    Column("message", Text),
    Column("value", Float),
    Column("threshold", Float),
    Column("library", String(16)),
    Column("updated_at_s", Float, nullable=False),
)

silences = Table(
    "silences", metadata,
    Column("id", Integer, primary_key=True),
    Column("queue_glob", String(255)),  # NULL matches every queue
    Column("library", String(16)),
    Column("alert_type", String(32)),
    Column("severity", String(16)),
    Column("starts_at_s", Float, nullable=False),
    Column("ends_at_s", Float, nullable=False),  # expiring a silence early sets this to the time of expiry
    Column("comment", Text, nullable=False),
    Column("created_by", String(320)),
    Column("created_at_s", Float, nullable=False),
    Index("ix_silences_ends_at_s", "ends_at_s"),
)

VERSION_6_TABLES = (alert_rule_states, silences)
VERSION_6_ALERT_COLUMNS = {"library": "VARCHAR(16)", "silenced_by": "INTEGER", "acknowledged_until_s": "FLOAT"}

# --- version 9: recent failed jobs ----------------------------------------------------------------

job_failures = Table(
    "job_failures", metadata,
    Column("id", Integer, primary_key=True),
    Column("series_id", Integer, nullable=False),
    Column("failed_at_ms", BigInteger, nullable=False),  # the job's end time (the read time when unknown)
    Column("job_id", String(255), nullable=False),
    Column("job_name", String(1000)),  # RQ function, BullMQ job name, Celery task name
    Column("exception_type", String(255), nullable=False),  # class name without module; "unknown"
    Column("message", Text),
    Column("traceback", Text),  # plain text as the library stored it
    Column("worker", String(255)),
    Column("run_ms", Float),
    UniqueConstraint("series_id", "job_id", "failed_at_ms", name="uq_job_failures_job"),
    Index("ix_job_failures_series_time", "series_id", "failed_at_ms"),
    Index("ix_job_failures_time", "failed_at_ms"),
)

VERSION_9_TABLES = (job_failures,)

# --- version 10: collectors that share the work (PostgreSQL: queue_samples and its blobs partitioned by day) ---

collector_leases = Table(
    "collector_leases", metadata,
    Column("target", String(400), primary_key=True),  # a configured Redis, as redis://host:port/db
    Column("owner", String(255)),  # the collector holding it: QUEUEWATCH_COLLECTOR_ID or hostname:pid
    Column("token", BigInteger, nullable=False, default=0),  # fencing token: +1 each time the owner changes
    Column("expires_at_s", Float, nullable=False, default=0.0),  # database clock
    Column("read_at_s", Float),  # when the owner last stored a reading of it
    Column("read_by", String(255)),  # who stored that reading
)

collector_members = Table(
    "collector_members", metadata,
    Column("collector_id", String(255), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at_s", Float, nullable=False),
    Column("expires_at_s", Float, nullable=False),  # renewed each cycle with its leases (database clock)
)

VERSION_10_TABLES = (collector_leases, collector_members)
