"""Schema version 8: snapshot durations as integer microseconds.

The seven timing columns and `oldest_waiting_ms` of `queue_samples` and `queue_latest` were floats (8 bytes
each in SQLite); they become `*_us` integers (1-4 bytes for the durations queues see), in place, inside the
migration's transaction. Tables that version 5 created with the new columns are left as they are.
"""
from __future__ import annotations

from sqlalchemy import Connection, inspect, text

from storage import schema
from storage.migrate_v5 import VIEW_NAME, create_view


def _convert(conn: Connection, table: str) -> bool:
    """Replace the table's ms float columns by µs integers; False when it has none (nothing to do)."""
    present = {c["name"] for c in inspect(conn).get_columns(table)}
    old = [name for name in schema.MICRO_COLUMNS if name in present]
    if not old:
        return False
    for name in old:
        not_null = " NOT NULL DEFAULT 0" if name == "oldest_waiting_ms" else ""
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {schema.micro_name(name)} BIGINT{not_null}"))
    assignments = ", ".join(f"{schema.micro_name(name)} = CAST(ROUND({name} * 1000.0) AS BIGINT)" for name in old)
    conn.execute(text(f"UPDATE {table} SET {assignments}"))
    for name in old:
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {name}"))
    return True


def micro_durations(conn: Connection) -> None:
    """The version 8 migration (see the module docstring)."""
    tables = [t.name for t in (schema.queue_samples, schema.queue_latest) if conn.dialect.has_table(conn, t.name)]
    if not tables:
        return
    conn.execute(text(f"DROP VIEW IF EXISTS {VIEW_NAME}"))  # it names the old columns
    for table in tables:
        _convert(conn, table)
    create_view(conn)
