"""Engine creation (SQLite pragmas, clear errors for bad URLs) and versioned schema migrations."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from storage import schema

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_POOL_SIZE = 5
"""Connections kept open per process on PostgreSQL: the collector's cycle write, its lease renewals, the
notifier threads and a dashboard's few concurrent reads; a burst may open PG_POOL_OVERFLOW more."""
PG_POOL_OVERFLOW = 5
PG_POOL_RECYCLE_S = 1800


class StorageError(RuntimeError):
    """The history database cannot be opened, read or written; the message says why."""


class SchemaTooNew(StorageError):
    """The database was migrated by a newer queuewatch than this one."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _pool_options(is_sqlite: bool) -> dict:
    """SQLite keeps SQLAlchemy's defaults; a server gets a bounded pool that checks a connection before use
    (a restarted PostgreSQL or a dropped idle connection costs one retry, not an error)."""
    if is_sqlite:
        return {}
    return {"pool_pre_ping": True, "pool_size": PG_POOL_SIZE, "max_overflow": PG_POOL_OVERFLOW,
            "pool_recycle": PG_POOL_RECYCLE_S}


def make_engine(db_url: str, *, migrate: bool = True) -> Engine:
    """Open the database at `db_url` (creating a SQLite file and its folder) and bring its schema up to date."""
    try:
        url = make_url(db_url)
    except (ArgumentError, ValueError) as exc:  # the URL is not echoed: it may hold a password
        raise StorageError(f"not a database URL ({exc}); expected e.g. sqlite:///queuewatch.db or "
                           "postgresql://user@host/db") from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3, a dependency, whatever SQLAlchemy defaults to
    is_sqlite = url.get_backend_name() == "sqlite"
    if is_sqlite and url.database and url.database != ":memory:":
        try:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder for {url.database}: {exc}") from exc
    try:
        engine = create_engine(url, **_pool_options(is_sqlite))
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use database URL {url.render_as_string(hide_password=True)}: {exc}") from exc
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        try:
            run_migrations(engine)
        except StorageError:
            engine.dispose()
            raise
        except OperationalError as exc:
            raise StorageError(_describe(exc, url.render_as_string(hide_password=True))) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot prepare database {url.render_as_string(hide_password=True)}: {exc}") from exc
    return engine


def error_text(exc: BaseException) -> str:
    """The driver's message of a database error on one line, without the SQL statement and its parameters."""
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig if orig is not None else exc).split())


def _describe(exc: OperationalError, where: str) -> str:
    text = error_text(exc)
    if "locked" in text:
        return f"database {where} is locked by another process (waited {SQLITE_BUSY_TIMEOUT_MS} ms): {text}"
    return f"cannot open database {where}: {text}"


def _v1_initial(conn: Connection) -> None:
    for table in schema.VERSION_1_TABLES:
        table.create(conn, checkfirst=True)


def _add_snapshot_columns(conn: Connection, names: tuple[str, ...]) -> None:
    """Add TEXT columns to queue_snapshots unless present (tables created later already have them)."""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.queue_snapshots.name)}
    for name in names:
        if name not in columns:
            conn.execute(text(f"ALTER TABLE queue_snapshots ADD COLUMN {name} TEXT"))


def _v2_users_and_recent_executions(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=list(schema.VERSION_2_TABLES))
    _add_snapshot_columns(conn, ("recent_processing_ms", "cursor_state", "unavailable"))


def _v3_library_details(conn: Connection) -> None:
    _add_snapshot_columns(conn, ("details",))


def _v4_dashboard_sessions(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=list(schema.VERSION_4_TABLES))


def _v5_compact_history(conn: Connection) -> None:
    from storage.migrate_v5 import compact_history

    compact_history(conn)


def _v6_alert_rules_and_silences(conn: Connection) -> None:
    """Alert timers, silences and three alerts columns; touches only alert tables, whatever v5 did or not."""
    schema.metadata.create_all(conn, tables=list(schema.VERSION_6_TABLES))
    if not conn.dialect.has_table(conn, schema.alerts.name):
        return
    columns = {c["name"] for c in inspect(conn).get_columns(schema.alerts.name)}
    for name, sql_type in schema.VERSION_6_ALERT_COLUMNS.items():
        if name not in columns:
            conn.execute(text(f"ALTER TABLE alerts ADD COLUMN {name} {sql_type}"))


def _v7_notification_deliveries(conn: Connection) -> None:
    """Creates the delivery log unless present, so it applies on top of any earlier version."""
    schema.metadata.create_all(conn, tables=list(schema.VERSION_7_TABLES), checkfirst=True)


def _v8_micro_durations(conn: Connection) -> None:
    from storage.migrate_v8 import micro_durations

    micro_durations(conn)


def _v9_job_failures(conn: Connection) -> None:
    """Creates the failed-jobs table unless present, so it applies on top of any earlier version."""
    schema.metadata.create_all(conn, tables=list(schema.VERSION_9_TABLES), checkfirst=True)


def _v10_scale_out(conn: Connection) -> None:
    """PostgreSQL: raw snapshots in day partitions (history kept); every engine: the collectors' lease table."""
    schema.metadata.create_all(conn, tables=list(schema.VERSION_10_TABLES), checkfirst=True)
    if conn.dialect.name == "postgresql":
        from storage.migrate_v5 import create_view
        from storage.partitions import partition_tables

        partition_tables(conn)
        create_view(conn)


def _v11_outage_index(conn: Connection) -> None:
    """The failed cycles of a range by index: reading a chart's outages walked every cycle of the range."""
    if conn.dialect.has_table(conn, schema.cycles.name):
        schema.FAILED_CYCLES_INDEX.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1_initial),
    (2, _v2_users_and_recent_executions),
    (3, _v3_library_details),
    (4, _v4_dashboard_sessions),
    (5, _v5_compact_history),
    (6, _v6_alert_rules_and_silences),
    (7, _v7_notification_deliveries),
    (8, _v8_micro_durations),
    (9, _v9_job_failures),
    (10, _v10_scale_out),
    (11, _v11_outage_index),
]


def current_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, schema.schema_version.name):
        return 0
    return conn.execute(select(func.coalesce(func.max(schema.schema_version.c.version), 0))).scalar_one()


def applied_versions(conn: Connection) -> set[int]:
    return set(conn.execute(select(schema.schema_version.c.version)).scalars())


def latest_version() -> int:
    """The schema version this code writes."""
    return max(number for number, _ in MIGRATIONS)


def applied_versions(conn: Connection) -> set[int]:
    """The migration numbers recorded in schema_version."""
    return set(conn.execute(select(schema.schema_version.c.version)).scalars())


def run_migrations(engine: Engine) -> int:
    """Apply every migration newer than the database's version, each in its own transaction; refuse a database
    whose version is newer than this code's (it may hold tables or meanings this code would get wrong).

    A migration runs when its number is not recorded, even below the highest one recorded: version numbers
    may have gaps, and a database can have received a later number before an earlier one.
    """
    with engine.begin() as conn:
        schema.schema_version.create(conn, checkfirst=True)
        version = current_version(conn)
        applied = applied_versions(conn)
    if version > latest_version():
        raise SchemaTooNew(f"the database has schema version {version}, newer than version {latest_version()} "
                           "that this queuewatch knows: upgrade queuewatch (or use another database)")
    for number, migrate in MIGRATIONS:
        if number in applied:
            continue
        with engine.begin() as conn:
            migrate(conn)
            conn.execute(schema.schema_version.insert().values(version=number, applied_at_s=time.time()))
        version = max(version, number)
    return version
