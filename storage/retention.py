"""Retention: delete rows older than the cut-off in bounded batches, one short transaction each."""
from __future__ import annotations

from sqlalchemy import Column, Engine, Table, delete, select
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import StorageError, error_text
from storage.schema import alerts, cycles, host_snapshots, notification_deliveries, queue_snapshots, worker_snapshots

DEFAULT_BATCH_ROWS = 5000


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


def purge(engine: Engine, cutoff_s: float, batch_rows: int = DEFAULT_BATCH_ROWS) -> dict[str, int]:
    """Delete snapshots, cycles and resolved alerts older than `cutoff_s`; returns rows deleted per table.

    A database error (disk full, read-only file) is a StorageError; batches already deleted stay deleted.
    """
    try:
        return _purge_all(engine, cutoff_s, batch_rows)
    except SQLAlchemyError as exc:
        raise StorageError(f"retention could not delete old rows: {error_text(exc)}") from exc


def _purge_all(engine: Engine, cutoff_s: float, batch_rows: int) -> dict[str, int]:
    counts = {
        "queue_snapshots": _purge_table(engine, queue_snapshots, queue_snapshots.c.sampled_at_s, cutoff_s, batch_rows),
        "worker_snapshots": _purge_table(engine, worker_snapshots, worker_snapshots.c.sampled_at_s, cutoff_s,
                                         batch_rows),
        "host_snapshots": _purge_table(engine, host_snapshots, host_snapshots.c.sampled_at_s, cutoff_s, batch_rows),
    }
    # events of a removed alert go with it (ON DELETE CASCADE)
    counts["alerts"] = _purge_table(engine, alerts, alerts.c.resolved_at_s, cutoff_s, batch_rows)
    counts["notification_deliveries"] = _purge_table(engine, notification_deliveries,
                                                     notification_deliveries.c.created_at_s, cutoff_s, batch_rows)
    # a cycle that finished before the cut-off holds only snapshots already removed above
    counts["cycles"] = _purge_table(engine, cycles, cycles.c.finished_at_s, cutoff_s, batch_rows)
    return counts
