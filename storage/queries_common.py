"""Helpers shared by the read queries: ISO times, time buckets, latest-row lookups, read errors."""
from __future__ import annotations

import math
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column, ColumnElement, Connection, Engine, Float, Integer, Select, Table, and_, cast, func, literal,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import StorageError

MAX_POINTS = 2000
NICE_WIDTHS_S: tuple[float, ...] = (
    1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)
# A queue or worker whose newest row is this much older than the newest row of its table is not current.
CURRENT_WITHIN_S = 300.0


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_utc(at_s: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC rounded to milliseconds ("2025-10-19T12:00:00.000Z"); None stays None."""
    if at_s is None or (isinstance(at_s, float) and math.isnan(at_s)):
        return None
    moment = _EPOCH + timedelta(milliseconds=round(float(at_s) * 1000.0))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_utc_series(seconds: pd.Series) -> pd.Series:
    """Vectorised iso_utc (missing values become None); each distinct time is formatted once."""
    values = pd.to_numeric(seconds, errors="coerce").astype("float64")
    missing = values.isna().to_numpy()
    millis = (values.fillna(0.0) * 1000.0).round().astype("int64").to_numpy()
    distinct, inverse = np.unique(millis, return_inverse=True)
    text = pd.to_datetime(distinct, unit="ms", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    formatted = np.asarray(text, dtype=object)[inverse]
    formatted[missing] = None
    return pd.Series(formatted, index=seconds.index, dtype=object)


def utc_times(seconds: pd.Series) -> pd.Series:
    """Epoch seconds as timezone-aware UTC datetimes (for chart axes and tables)."""
    return pd.to_datetime(seconds.astype("float64"), unit="s", utc=True)


def is_missing(value: Any) -> bool:
    """True for None and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def bucket_width_s(span_s: float, max_points: int = MAX_POINTS, min_width_s: float = 1.0) -> float:
    """Smallest round bucket width that keeps a span within `max_points` epoch-aligned buckets."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    span_s = max(float(span_s), 0.0)
    for width in NICE_WIDTHS_S:
        if width >= min_width_s and math.ceil(span_s / width) + 1 <= max_points:
            return float(width)
    days = math.ceil(span_s / (max_points - 1) / 86400.0)
    return float(max(days, 1) * 86400)


def bucket_index(engine_or_conn: Engine | Connection, time_column: Column, width_s: float) -> ColumnElement:
    """SQL expression numbering epoch-aligned buckets of `width_s` seconds (floor of time / width)."""
    ratio = time_column / literal(float(width_s), Float)
    if engine_or_conn.dialect.name == "sqlite":
        return cast(ratio, Integer)  # times are positive, so truncation is the floor
    return cast(func.floor(ratio), Integer)


def latest_per_key(table: Table, key: str, time_column: str) -> Select:
    """(name, last_at_s) per distinct key, found by a loose index scan over the (key, time) index."""
    lowest, following, newest = table.alias("k_low"), table.alias("k_next"), table.alias("k_new")
    first = select(func.min(lowest.c[key]).label("name")).cte("keys", recursive=True)
    step = select(
        select(func.min(following.c[key])).where(following.c[key] > first.c.name).scalar_subquery()
    ).where(first.c.name.is_not(None))
    keys = first.union_all(step)
    last_at = select(func.max(newest.c[time_column])).where(newest.c[key] == keys.c.name).scalar_subquery()
    return select(keys.c.name.label("name"), last_at.label("last_at_s")).where(keys.c.name.is_not(None))


def latest_rows(table: Table, key: str, time_column: str, columns: list[Column]) -> Select:
    """The newest row per key (ties broken by the highest id), via `latest_per_key`."""
    latest = latest_per_key(table, key, time_column).subquery("latest")
    tie = table.alias("k_tie")
    newest_id = (select(func.max(tie.c.id))
                 .where(and_(tie.c[key] == latest.c.name, tie.c[time_column] == latest.c.last_at_s))
                 .scalar_subquery())
    on = and_(table.c[key] == latest.c.name, table.c[time_column] == latest.c.last_at_s)
    return (select(*columns).select_from(table.join(latest, on))
            .where(table.c.id == newest_id).order_by(table.c[key]))


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; database errors become StorageError with a readable message."""
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        raise StorageError(f"cannot read the history database: {detail}") from exc


def frame(conn: Connection, statement: Select, columns: list[str] | None = None) -> pd.DataFrame:
    """Run a select and return its rows as a DataFrame (with the given columns when it has no rows)."""
    result = conn.execute(statement)
    names = list(result.keys())
    rows = result.fetchall()
    # plain tuples: pandas builds a frame from them ~3x faster than from SQLAlchemy Row objects
    return (pd.DataFrame(list(map(tuple, rows)), columns=columns or names) if rows
            else pd.DataFrame(columns=columns or names))
