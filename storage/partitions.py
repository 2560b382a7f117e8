"""PostgreSQL only: the raw snapshot tables as declarative partitions by UTC day of `sampled_at_ms`.

Each partitioned table has one partition per day (`<table>_pYYYYMMDD`, [day, next day) in epoch ms) and a
default partition that takes any row no day partition covers, so an insert never fails. The writer creates
today's and tomorrow's partitions ahead (`ensure_days`); retention drops whole day partitions that end before
the cut-off (`drop_days_before`) and deletes the few remaining old rows (default partition, the straddling
day) as on SQLite.
"""
from __future__ import annotations

import weakref
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, text
from sqlalchemy.schema import CreateTable

from storage import schema

DAY_MS = 86_400_000
PARTITIONED_TABLES = (schema.queue_samples, schema.queue_sample_blobs)
PARTITION_LOCK_KEY = 7171002  # advisory lock: one process at a time creates or drops partitions
_ensured: "weakref.WeakKeyDictionary[Engine, set[int]]" = weakref.WeakKeyDictionary()


def day_of(at_ms: int) -> int:
    """The UTC day (its first millisecond) holding `at_ms`."""
    return at_ms - at_ms % DAY_MS


def partition_name(table_name: str, day_ms: int) -> str:
    """`queue_samples_p20261202` for the day starting at `day_ms`."""
    return f"{table_name}_p{datetime.fromtimestamp(day_ms / 1000, timezone.utc):%Y%m%d}"


def _day_from_name(table_name: str, name: str) -> int | None:
    suffix = name.removeprefix(f"{table_name}_p")
    if suffix == name or len(suffix) != 8 or not suffix.isdigit():
        return None
    day = datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=timezone.utc)
    return int(day.timestamp() * 1000)


def is_partitioned(conn: Connection, table_name: str) -> bool:
    """Whether `table_name` is a partitioned table (relkind 'p')."""
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"),
                        {"name": table_name}).scalar()
    return kind == "p"


def day_partitions(conn: Connection, table_name: str) -> dict[int, str]:
    """The day partitions of a table: day start (ms) -> partition name."""
    rows = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE i.inhparent = to_regclass(:name)"), {"name": table_name}).scalars()
    days = {_day_from_name(table_name, name): name for name in rows}
    return {day: name for day, name in days.items() if day is not None}


def _create_day(conn: Connection, table_name: str, day_ms: int) -> None:
    """Create one day partition; rows of that day already in the default partition move into it."""
    name, end_ms = partition_name(table_name, day_ms), day_ms + DAY_MS
    if conn.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
        return
    bounds = f"FROM ({day_ms}) TO ({end_ms})"
    default = f"{table_name}_default"
    in_default = f"sampled_at_ms >= {day_ms} AND sampled_at_ms < {end_ms}"
    if conn.execute(text(f"SELECT 1 FROM {default} WHERE {in_default} LIMIT 1")).first() is None:
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF {table_name} FOR VALUES {bounds}"))
        return
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table_name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    conn.execute(text(f"INSERT INTO {name} SELECT * FROM {default} WHERE {in_default}"))
    conn.execute(text(f"DELETE FROM {default} WHERE {in_default}"))
    conn.execute(text(f"ALTER TABLE {table_name} ATTACH PARTITION {name} FOR VALUES {bounds}"))


def create_days(conn: Connection, days_ms: list[int]) -> None:
    """Create the day partitions of every partitioned table for these days (inside the caller's transaction)."""
    conn.execute(text(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})"))
    for table in PARTITIONED_TABLES:
        for day_ms in sorted(set(days_ms)):
            _create_day(conn, table.name, day_ms)


def ensure_days(engine: Engine, at_s: float) -> None:
    """Make sure the partitions of the day of `at_s` and of the next day exist (once per day per process)."""
    if engine.dialect.name != "postgresql":
        return
    today = day_of(int(at_s * 1000))
    done = _ensured.setdefault(engine, set())
    if today in done:
        return
    with engine.begin() as conn:
        if is_partitioned(conn, schema.queue_samples.name):
            create_days(conn, [today, today + DAY_MS])
    done.add(today)


def drop_days_before(engine: Engine, cutoff_ms: int) -> dict[str, int]:
    """Drop the day partitions that end at or before `cutoff_ms`; returns the rows they held per table."""
    dropped = {table.name: 0 for table in PARTITIONED_TABLES}
    if engine.dialect.name != "postgresql":
        return dropped
    with engine.begin() as conn:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})"))
        for table in PARTITIONED_TABLES:
            for day_ms, name in sorted(day_partitions(conn, table.name).items()):
                if day_ms + DAY_MS <= cutoff_ms:
                    dropped[table.name] += conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
                    conn.execute(text(f"DROP TABLE {name}"))
    for days in _ensured.values():
        days.clear()
    return dropped


def partition_tables(conn: Connection) -> None:
    """Schema version 10 on PostgreSQL: turn the raw snapshot tables into partitioned ones, keeping every row
    (the old table is renamed, its rows copied into the day partitions of the days they fall in, then dropped).
    The queue_snapshots view, which reads them, is dropped first and recreated by the caller."""
    conn.execute(text(f"DROP VIEW IF EXISTS {schema.queue_snapshots.name}"))
    days: set[int] = set()
    for table in PARTITIONED_TABLES:
        if is_partitioned(conn, table.name):
            continue
        old, key = f"{table.name}_unpartitioned", table.primary_key.name
        conn.execute(text(f"ALTER TABLE {table.name} RENAME TO {old}"))
        conn.execute(text(f"ALTER TABLE {old} RENAME CONSTRAINT {key} TO {key}_unpartitioned"))
        created = str(CreateTable(table).compile(dialect=conn.dialect)).rstrip().rstrip(";")
        conn.execute(text(f"{created} PARTITION BY RANGE (sampled_at_ms)"))
        conn.execute(text(f"CREATE TABLE {table.name}_default PARTITION OF {table.name} DEFAULT"))
        found = conn.execute(text(f"SELECT DISTINCT sampled_at_ms - sampled_at_ms % {DAY_MS} FROM {old}")).scalars()
        days |= {int(day) for day in found}
        for day_ms in sorted(days):
            _create_day(conn, table.name, day_ms)
        columns = ", ".join(c.name for c in table.c)
        conn.execute(text(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {old}"))
        conn.execute(text(f"DROP TABLE {old}"))
