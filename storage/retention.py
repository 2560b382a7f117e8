"""Retention: delete rows older than the cut-off in bounded batches, one short transaction each.

Queue snapshots are clustered by (series, time), so each batch removes one contiguous primary-key range of one
series. On PostgreSQL they live in day partitions: the days that end before the cut-off are dropped whole first,
so the row deletes only meet the day that straddles the cut-off and the default partition. The 1-minute rollups follow the snapshots' cut-off; the 10-minute and hourly ones keep their own,
longer one (`rollup_cutoff_s`), so trends reach past the snapshots' retention.
"""
from __future__ import annotations

import math

from sqlalchemy import Column, Connection, Engine, Table, and_, delete, select
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import StorageError, error_text
from storage.failures import purge_failures
from storage.partitions import drop_days_before
from storage.schema import (
    ROLLUP_LEVELS_S, alerts, cycles, host_snapshots, queue_latest, queue_rollups, queue_sample_blobs,
    notification_deliveries, queue_samples, series, worker_snapshots,
)

DEFAULT_BATCH_ROWS = 5000
FINE_LEVEL_S = min(ROLLUP_LEVELS_S)


def _purge_table(engine: Engine, table: Table, time_column: Column, cutoff_s: float, batch_rows: int) -> int:
    condition = time_column < cutoff_s
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = select(table.c.id).where(condition).limit(batch_rows).scalar_subquery()
            count = conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount
        deleted += count
        if count < batch_rows:
            return deleted


def _purge_range(engine: Engine, table: Table, time_column: str, cutoff: int, batch_rows: int,
                 prefix: dict[str, int]) -> int:
    """Delete the rows of one clustered key prefix (series, or level and series) older than `cutoff`, a
    contiguous key range, in batches of at most `batch_rows`."""
    key = and_(*[table.c[name] == value for name, value in prefix.items()])
    column = table.c[time_column]
    deleted = 0
    while True:
        with engine.begin() as conn:
            bound = conn.execute(select(column).where(and_(key, column < cutoff)).order_by(column)
                                 .offset(batch_rows).limit(1)).scalar()
            count = conn.execute(delete(table).where(and_(key, column < (cutoff if bound is None else bound))))\
                .rowcount
        deleted += count
        if bound is None:
            return deleted


def _series_ids(conn: Connection) -> list[int]:
    return [sid for (sid,) in conn.execute(select(series.c.id).order_by(series.c.id))]


def purge(engine: Engine, cutoff_s: float, batch_rows: int = DEFAULT_BATCH_ROWS, *,
          rollup_cutoff_s: float | None = None) -> dict[str, int]:
    """Delete snapshots, cycles and resolved alerts older than `cutoff_s`, and the 10-minute and hourly rollups
    older than `rollup_cutoff_s` (None: kept); returns rows deleted per table.

    A database error (disk full, read-only file) is a StorageError; batches already deleted stay deleted.
    """
    try:
        return _purge_all(engine, cutoff_s, batch_rows, rollup_cutoff_s)
    except SQLAlchemyError as exc:
        raise StorageError(f"retention could not delete old rows: {error_text(exc)}") from exc


def _purge_queues(engine: Engine, cutoff_s: float, batch_rows: int, rollup_cutoff_s: float | None) -> dict[str, int]:
    cutoff_ms = math.ceil(cutoff_s * 1000.0 - 1e-6)
    dropped = drop_days_before(engine, cutoff_ms)
    with engine.connect() as conn:
        ids = _series_ids(conn)
    counts = {"queue_snapshots": dropped[queue_samples.name], "queue_rollups": 0}
    for series_id in ids:
        prefix = {"series_id": series_id}
        counts["queue_snapshots"] += _purge_range(engine, queue_samples, "sampled_at_ms", cutoff_ms, batch_rows,
                                                  prefix)
        _purge_range(engine, queue_sample_blobs, "sampled_at_ms", cutoff_ms, batch_rows, prefix)
        for level_s in ROLLUP_LEVELS_S:
            level_cutoff_s = cutoff_s if level_s == FINE_LEVEL_S else rollup_cutoff_s
            if level_cutoff_s is None:
                continue
            # a bucket goes once it ends before the cut-off
            end_ms = math.floor(level_cutoff_s * 1000.0) - level_s * 1000 + 1
            counts["queue_rollups"] += _purge_range(engine, queue_rollups, "bucket_ms", end_ms, batch_rows,
                                                    {"level_s": level_s, **prefix})
    with engine.begin() as conn:  # a queue not seen since the cut-off is no longer listed
        conn.execute(delete(queue_latest).where(queue_latest.c.sampled_at_ms < cutoff_ms))
    return counts


def _purge_all(engine: Engine, cutoff_s: float, batch_rows: int, rollup_cutoff_s: float | None) -> dict[str, int]:
    counts = {
        **_purge_queues(engine, cutoff_s, batch_rows, rollup_cutoff_s),
        "worker_snapshots": _purge_table(engine, worker_snapshots, worker_snapshots.c.sampled_at_s, cutoff_s,
                                         batch_rows),
        "host_snapshots": _purge_table(engine, host_snapshots, host_snapshots.c.sampled_at_s, cutoff_s, batch_rows),
    }
    counts["job_failures"] = purge_failures(engine, cutoff_s)
    # events of a removed alert go with it (ON DELETE CASCADE)
    counts["alerts"] = _purge_table(engine, alerts, alerts.c.resolved_at_s, cutoff_s, batch_rows)
    counts["notification_deliveries"] = _purge_table(engine, notification_deliveries,
                                                     notification_deliveries.c.created_at_s, cutoff_s, batch_rows)
    # a cycle that finished before the cut-off holds only snapshots already removed above
    counts["cycles"] = _purge_table(engine, cycles, cycles.c.finished_at_s, cutoff_s, batch_rows)
    return counts
