"""Schema version 5: the snapshots of versions 1-4 moved into series-clustered tables, rollups built from them.

Runs inside the migration's transaction: the old queue_snapshots table is copied (raw rows in one
INSERT ... SELECT per table, in (series, time) order), each queue's newest row becomes its latest row, the
rollups are computed per series, then the table is dropped and a view of the same name and columns replaces it.
"""
from __future__ import annotations

from sqlalchemy import Connection, and_, case, cast, func, literal, select, text, true
from sqlalchemy.dialects import postgresql, sqlite

from storage import schema
from storage.layout import CURSOR_COLUMNS, snapshots_view_select
from storage.rollups import rebuild_rollups

VIEW_NAME = schema.queue_snapshots.name
INDEXES = (("ix_worker_snapshots_cycle", "worker_snapshots"), ("ix_host_snapshots_cycle", "host_snapshots"))


def _is_table(conn: Connection, name: str) -> bool:
    return name in conn.dialect.get_table_names(conn)


def create_view(conn: Connection) -> None:
    """(Re)create the queue_snapshots view over the version 5 tables."""
    compiled = snapshots_view_select().compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    conn.execute(text(f"DROP VIEW IF EXISTS {VIEW_NAME}"))
    conn.execute(text(f"CREATE VIEW {VIEW_NAME} AS {compiled}"))


def _ms(column):
    return cast(func.round(column * literal(1000.0)), schema.BigInteger)


def _sample_expressions(q, s) -> dict:
    """queue_samples column -> expression over the legacy table `q` joined to series `s`."""
    status = case((q.c.status == "warning", 1), (q.c.status == "critical", 2), else_=0)
    expressions = {"series_id": s.c.id, "sampled_at_ms": _ms(q.c.sampled_at_s), "cycle_id": q.c.cycle_id}
    for name in schema.DEPTH_COLUMNS + schema.DELTA_COLUMNS:
        expressions[name] = q.c[name]
    expressions["interval_ms"] = _ms(q.c.interval_s)
    for name in schema.MILLI_COLUMNS:
        expressions[f"{name}_m"] = _ms(q.c[name])
    for name in schema.MICRO_COLUMNS:
        expressions[schema.micro_name(name)] = _ms(q.c[name])
    expressions.update(status=status,
                       issues=func.nullif(q.c.issues, "[]"), unavailable=func.nullif(q.c.unavailable, ""),
                       details=q.c.details)
    return expressions


def _copy(conn: Connection, target, expressions: dict, where=None) -> None:
    q, s = schema.legacy_queue_snapshots, schema.series
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    source = (select(*expressions.values())
              .select_from(q.join(s, and_(s.c.queue_name == q.c.queue_name, s.c.library == q.c.library)))
              .where(true() if where is None else where)
              .order_by(s.c.id, q.c.sampled_at_s, q.c.id.desc()))  # a duplicate time keeps the newest row
    statement = dialect.insert(target).from_select(list(expressions), source)
    conn.execute(statement.on_conflict_do_nothing(index_elements=["series_id", "sampled_at_ms"]))


def _copy_snapshots(conn: Connection) -> None:
    q, s = schema.legacy_queue_snapshots, schema.series
    conn.execute(s.insert().from_select(["library", "queue_name"],
                                        select(q.c.library, q.c.queue_name).distinct()
                                        .order_by(q.c.queue_name, q.c.library)))
    _copy(conn, schema.queue_samples, _sample_expressions(q, s))
    blobs = {"series_id": s.c.id, "sampled_at_ms": _ms(q.c.sampled_at_s), "processing_sketch": q.c.processing_sketch,
             "wait_sketch": q.c.wait_sketch, "recent_processing_ms": q.c.recent_processing_ms}
    _copy(conn, schema.queue_sample_blobs, blobs,
          (q.c.processing_sketch.is_not(None)) | (q.c.wait_sketch.is_not(None)) | (q.c.recent_processing_ms.is_not(None)))
    for series_id, library, name in conn.execute(select(s.c.id, s.c.library, s.c.queue_name)).all():
        pick = q.alias("pick")
        newest = (select(pick.c.id).where(and_(pick.c.queue_name == name, pick.c.library == library))
                  .order_by(pick.c.sampled_at_s.desc(), pick.c.id.desc()).limit(1).scalar_subquery())
        latest = {**_sample_expressions(q, s), **{c: q.c[c] for c in CURSOR_COLUMNS}}
        conn.execute(schema.queue_latest.insert().from_select(
            list(latest), select(*latest.values()).select_from(q.join(s, s.c.id == series_id))
            .where(q.c.id == newest)))
        rebuild_rollups(conn, series_id)


def compact_history(conn: Connection) -> None:
    """The version 5 migration (see the module docstring)."""
    for table in schema.VERSION_5_TABLES:
        table.create(conn, checkfirst=True)
    for index, table in INDEXES:
        if _is_table(conn, table):
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {index} ON {table} (cycle_id)"))
    if _is_table(conn, VIEW_NAME):
        if conn.execute(text(f"SELECT 1 FROM {VIEW_NAME} LIMIT 1")).first() is not None:
            _copy_snapshots(conn)
        conn.execute(text(f"DROP TABLE {VIEW_NAME}"))
    create_view(conn)
