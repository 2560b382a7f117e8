"""Exports: snapshots under the spec's QueueMetrics names, worker memory and alerts, as DataFrames or CSV."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Float, Integer, Table, and_, func, select

from storage import export_rows
from storage.fields import EXTRA_SNAPSHOT_FIELDS, QUEUE_METRICS_FIELDS, ZERO_WHEN_UNKNOWN
from storage.queries_alerts import alert_history
from storage.queries_common import iso_utc_series, reading
from storage.layout import legacy_frame
from storage.queries_latest import queue_names as recorded_queue_names
from storage.queries_series import range_ms
from storage.schema import queue_latest, queue_samples, series, worker_snapshots

EXPORT_CHUNK_ROWS = 50_000
FIRST_WINDOW_MS = 3_600_000  # the first time window read; later ones are sized to hold about a chunk
# Last column: the QueueMetrics fields the row's backend could not measure (their cells are empty, never 0).
SNAPSHOT_EXPORT_FIELDS: tuple[tuple[str, str], ...] = (QUEUE_METRICS_FIELDS + EXTRA_SNAPSHOT_FIELDS
                                                       + (("unavailable", "unavailable"),))
_METRIC_NAMES = tuple(name for name, column in QUEUE_METRICS_FIELDS
                      if column not in ("queue_name", "sampled_at_s"))
WORKER_EXPORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("timestamp", "sampled_at_s"), ("workerId", "worker_name"), ("queueName", "queues"),
    ("hostname", "hostname"),
    ("pid", "pid"), ("state", "state"), ("alive", "alive"), ("jobsProcessed", "jobs_processed"),
    ("successfulJobs", "successful_jobs"), ("failedJobs", "failed_jobs"), ("startTime", "birth_at_s"),
    ("lastHeartbeat", "last_heartbeat_at_s"), ("heapUsed", "heap_used_mb"), ("heapTotal", "heap_total_mb"),
    ("external", "external_mb"), ("rss", "rss_mb"), ("arrayBuffers", "array_buffers_mb"),
    ("percentage", "memory_percentage"), ("shouldRecycle", "should_recycle"),
    ("recycleReason", "recycle_reason"), ("library", "library"), ("memorySource", "memory_source"),
)
ALERT_EXPORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "id"), ("severity", "severity"), ("queueName", "queue_name"), ("type", "alert_type"),
    ("message", "message"), ("value", "value"), ("threshold", "threshold"), ("timestamp", "opened_at_s"),
    ("acknowledged", "acknowledged"), ("acknowledgedBy", "acknowledged_by"),
    ("acknowledgedAt", "acknowledged_at_s"), ("updatedAt", "updated_at_s"), ("resolvedAt", "resolved_at_s"),
    ("state", "state"),
)
_TIME_COLUMNS = frozenset({"sampled_at_s", "birth_at_s", "last_heartbeat_at_s", "opened_at_s",
                           "acknowledged_at_s", "updated_at_s", "resolved_at_s"})


def _renamed(rows: pd.DataFrame, fields: Sequence[tuple[str, str]],
             zero_when_unknown: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Columns under the export names, times as ISO 8601 UTC, unknown figures of `zero_when_unknown` as 0."""
    out = pd.DataFrame(index=rows.index)
    for name, column in fields:
        values = rows[column]
        if column in _TIME_COLUMNS:
            values = iso_utc_series(values)
        elif name in zero_when_unknown:
            values = values.astype("float64").fillna(0.0)
        out[name] = values
    return out.reset_index(drop=True)


def _blank_unavailable(rows: pd.DataFrame) -> pd.DataFrame:
    """Empty (NA) cells for the figures each row's `unavailable` names; whole-number columns stay whole."""
    listed = "," + rows["unavailable"].fillna("").astype(str).str.replace(" ", "") + ","
    for name in _METRIC_NAMES:
        missing = listed.str.contains(f",{name},", regex=False)
        if missing.any():
            values = rows[name]
            if pd.api.types.is_integer_dtype(values):
                values = values.astype("Int64")
            rows[name] = values.mask(missing)
    return rows


def _empty(fields: Sequence[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(columns=[name for name, _ in fields])


def _in_range(table: Table, since_s: float, until_s: float, name_column: str,
              names: Sequence[str] | None = None, libraries: Sequence[str] | None = None):
    """Rows of a snapshot table sampled in the range, of these names and libraries (None or empty: all)."""
    condition = and_(table.c.sampled_at_s >= since_s, table.c.sampled_at_s <= until_s)
    if names:
        condition = and_(condition, table.c[name_column].in_(list(names)))
    if libraries:
        condition = and_(condition, table.c.library.in_(list(libraries)))
    return condition


def _series_in(conn, names: Sequence[str] | None, libraries: Sequence[str] | None) -> list[int]:
    condition = series.c.id.is_not(None)
    if names:
        condition = and_(condition, series.c.queue_name.in_(list(names)))
    if libraries:
        condition = and_(condition, series.c.library.in_(list(libraries)))
    return [sid for (sid,) in conn.execute(select(series.c.id).where(condition).order_by(series.c.id))]


def _stored_span_ms(conn, ids: list[int]) -> tuple[int, int] | None:
    """[oldest, newest] snapshot time (ms) of these series, read from each series' first key and latest row."""
    t = queue_samples
    oldest = [conn.execute(select(t.c.sampled_at_ms).where(t.c.series_id == sid).order_by(t.c.sampled_at_ms)
                           .limit(1)).scalar() for sid in ids]
    newest = conn.execute(select(func.max(queue_latest.c.sampled_at_ms))
                          .where(queue_latest.c.series_id.in_(ids))).scalar()
    known = [value for value in oldest if value is not None]
    return (min(known), max(newest or 0, *known)) if known else None


def _columns_frame(rows: Sequence[tuple], names: list[str]) -> pd.DataFrame:
    """A DataFrame of fetched rows built column by column (numbers as numpy arrays, NULL as NaN)."""
    columns = list(zip(*rows))
    data = {}
    for name, values in zip(names, columns):
        column = queue_samples.c[name]
        if isinstance(column.type, Integer) and not column.nullable:
            data[name] = np.array(values, dtype=np.int64)
        elif isinstance(column.type, (Float, Integer)):  # a nullable integer: NULL as NaN
            data[name] = np.array(values, dtype=np.float64)
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def iter_snapshot_exports(engine: Engine, queue_names: Sequence[str] | None, since_s: float, until_s: float,
                          *, chunk_rows: int = EXPORT_CHUNK_ROWS, limit: int | None = None,
                          libraries: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """Snapshots of the queues (all if None) of the libraries (all if None) in the range, by time then queue
    then library, in chunks of export columns.

    The range is read in consecutive time windows (one primary-key range per series each, sorted here), so
    memory stays flat whatever the range's size.
    """
    t = queue_samples
    raw_columns = [c.name for c in t.c if c.name not in ("cycle_id", "issues", "details")]
    columns = list(dict.fromkeys(column for _, column in SNAPSHOT_EXPORT_FIELDS))
    first_ms, end_ms = range_ms(since_s, until_s)
    left = None if limit is None else int(limit)
    with reading(engine) as conn:
        ids = _series_in(conn, queue_names, libraries)
        span = _stored_span_ms(conn, ids) if ids else None
        if span is None or (left is not None and left <= 0):
            return
        names = {sid: (library, name) for sid, library, name in
                 conn.execute(select(series.c.id, series.c.library, series.c.queue_name))}
        start_ms, stop_ms = max(first_ms, span[0]), min(end_ms, span[1] + 1)
        window_ms = FIRST_WINDOW_MS
        while start_ms < stop_ms and (left is None or left > 0):
            upper_ms = min(stop_ms, start_ms + window_ms)
            statement = select(*[t.c[name] for name in raw_columns]).where(and_(
                t.c.series_id.in_(ids), t.c.sampled_at_ms >= start_ms, t.c.sampled_at_ms < upper_ms))
            rows = conn.execute(statement).fetchall()
            if rows:
                frame = legacy_frame(_columns_frame(rows, raw_columns), names)
                frame = frame.sort_values(["sampled_at_s", "queue_name", "library"], kind="stable")
                if left is not None:
                    frame = frame.head(left)
                    left -= len(frame)
                for offset in range(0, len(frame), chunk_rows):
                    part = frame.iloc[offset:offset + chunk_rows][columns].reset_index(drop=True)
                    yield _blank_unavailable(_renamed(part, SNAPSHOT_EXPORT_FIELDS, ZERO_WHEN_UNKNOWN))
            scale = chunk_rows / max(len(rows), 1)
            window_ms = int(min(max(window_ms * min(scale, 8.0), 1000), 30 * 86_400_000))
            start_ms = upper_ms


def snapshots_export(engine: Engine, queue_names: Sequence[str] | None, since_s: float, until_s: float, *,
                     limit: int | None = None, libraries: Sequence[str] | None = None) -> pd.DataFrame:
    """Snapshots as one DataFrame: the spec's QueueMetrics columns in order, then EXTRA_SNAPSHOT_FIELDS and
    `unavailable`; figures a row's backend could not measure are NA."""
    parts = list(iter_snapshot_exports(engine, queue_names, since_s, until_s, limit=limit,
                                       libraries=libraries))
    return pd.concat(parts, ignore_index=True) if parts else _empty(SNAPSHOT_EXPORT_FIELDS)


def alert_queue_filter(engine: Engine, queue_names: Sequence[str] | None,
                       libraries: Sequence[str] | None) -> list[str] | None:
    """Queue names whose alerts an export holds: None for all; with `libraries`, the names those libraries
    wrote (alerts carry no library: a name shared with another library brings that library's alerts too)."""
    if not libraries:
        return list(queue_names) if queue_names else None
    names = set(recorded_queue_names(engine, libraries=libraries))
    return sorted(names & set(queue_names)) if queue_names else sorted(names)


def _alert_rows(engine: Engine, since_s: float, until_s: float, queue_names: Sequence[str] | None,
                libraries: Sequence[str] | None) -> pd.DataFrame:
    rows = alerts_export(engine, since_s, until_s)
    wanted = alert_queue_filter(engine, queue_names, libraries)
    return rows if wanted is None else rows[rows["queueName"].isin(wanted)].reset_index(drop=True)


def export_counts(engine: Engine, queue_names: Sequence[str] | None, since_s: float, until_s: float, *,
                  libraries: Sequence[str] | None = None) -> dict[str, int]:
    """Rows each export of the range would hold: snapshots and alerts of these queues, worker rows.

    `libraries` narrows every export to those libraries (alerts: see alert_queue_filter).
    """
    w = worker_snapshots
    first_ms, end_ms = range_ms(since_s, until_s)
    with reading(engine) as conn:
        ids = _series_in(conn, queue_names, libraries)
        t = queue_samples
        snapshots = conn.execute(select(func.count()).select_from(t).where(and_(
            t.c.series_id.in_(ids), t.c.sampled_at_ms >= first_ms, t.c.sampled_at_ms < end_ms))).scalar_one()
        in_range = _in_range(w, since_s, until_s, "worker_name", libraries=libraries)
        workers = conn.execute(select(func.count()).select_from(w).where(in_range)).scalar_one()
    alert_rows = alert_history(engine, since_s=since_s, until_s=until_s, limit=1_000_000)
    wanted = alert_queue_filter(engine, queue_names, libraries)
    if wanted is not None:
        alert_rows = alert_rows[alert_rows["queue_name"].isin(wanted)]
    return {"snapshots": int(snapshots), "workers": int(workers), "alerts": int(len(alert_rows))}


def worker_memory_export(engine: Engine, since_s: float, until_s: float, *,
                         worker_names: Sequence[str] | None = None,
                         libraries: Sequence[str] | None = None) -> pd.DataFrame:
    """Every worker row in the range under MemoryStats-style names, with the recycle flags stored then."""
    t = worker_snapshots
    condition = _in_range(t, since_s, until_s, "worker_name", worker_names, libraries)
    columns = [column for _, column in WORKER_EXPORT_FIELDS]
    statement = (select(*[t.c[c] for c in columns]).where(condition)
                 .order_by(t.c.sampled_at_s, t.c.worker_name))
    with reading(engine) as conn:
        rows = pd.DataFrame(list(map(tuple, conn.execute(statement).fetchall())), columns=columns)
    if rows.empty:
        return _empty(WORKER_EXPORT_FIELDS)
    rows["alive"] = rows["alive"].astype(bool)
    rows["should_recycle"] = rows["should_recycle"].astype(bool)
    return _renamed(rows, WORKER_EXPORT_FIELDS)


def alerts_export(engine: Engine, since_s: float, until_s: float) -> pd.DataFrame:
    """Alerts whose lifetime overlaps the range (open and resolved) under the spec's Alert names."""
    rows = alert_history(engine, since_s=since_s, until_s=until_s, limit=1_000_000)
    if rows.empty:
        return _empty(ALERT_EXPORT_FIELDS)
    return _renamed(rows, ALERT_EXPORT_FIELDS)


CSV_LINE_END = "\r\n"
"""RFC 4180 line ends: with them the csv writer also quotes cells holding a lone CR, which would split a row."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by spreadsheets (CSV injection)."""


def _defused(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_safe(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with text cells that a spreadsheet would run as a formula prefixed by a single quote.

    Only text cells change: numeric columns (a negative figure too) are written as numbers.
    """
    text_columns = [name for name in rows.columns
                    if pd.api.types.is_object_dtype(rows[name]) or pd.api.types.is_string_dtype(rows[name])]
    if not text_columns:
        return rows
    safe = rows.copy()
    for name in text_columns:
        distinct = safe[name].dropna().unique()
        if len(distinct) * 4 < len(safe):  # few distinct texts (names, statuses): each checked once
            safe[name] = safe[name].map({value: _defused(value) for value in distinct}, na_action="ignore")
        else:
            safe[name] = safe[name].map(_defused, na_action="ignore")
    return safe


def csv_cells(rows: pd.DataFrame) -> Iterator[tuple]:
    """The rows as tuples of plain values for csv.writer, written as DataFrame.to_csv writes them (missing
    values as empty cells)."""
    columns = []
    for name in rows.columns:
        values = rows[name]
        missing = values.isna().to_numpy()
        plain = values.to_numpy(dtype=object)
        if missing.any():
            plain = plain.copy()
            plain[missing] = None
        columns.append(plain)
    return zip(*columns)


def to_csv_text(rows: pd.DataFrame) -> str:
    """CSV text of a DataFrame (no index), safe to open in a spreadsheet."""
    return spreadsheet_safe(rows).to_csv(index=False, lineterminator=CSV_LINE_END)


def csv_cell(value: object) -> str:
    """One text cell as csv.writer writes it in a row (spreadsheet-safe, quoted when needed); None: empty."""
    if value is None or value == "":
        return ""
    text = str(_defused(str(value)))
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write_snapshots(engine: Engine, stream: IO[str], queues: Sequence[str] | None, since_s: float,
                     until_s: float, libraries: Sequence[str] | None) -> int:
    """The snapshot export as rows straight from the driver (storage.export_rows), the header included."""
    stream.write(",".join(name for name, _ in SNAPSHOT_EXPORT_FIELDS) + CSV_LINE_END)
    first_ms, end_ms = range_ms(since_s, until_s)
    with reading(engine) as conn:
        ids = _series_in(conn, queues, libraries)
        span = _stored_span_ms(conn, ids) if ids else None
        if span is None:
            return 0
        names = {sid: (library, name) for sid, library, name in
                 conn.execute(select(series.c.id, series.c.library, series.c.queue_name))}
        form = export_rows.RowFormat(SNAPSHOT_EXPORT_FIELDS, frozenset(_METRIC_NAMES), ZERO_WHEN_UNKNOWN,
                                     csv_cell)
        return export_rows.write_rows(conn, stream, form, ids, names, max(first_ms, span[0]),
                                      min(end_ms, span[1] + 1), chunk_rows=EXPORT_CHUNK_ROWS,
                                      first_window_ms=FIRST_WINDOW_MS, line_end=CSV_LINE_END)


def export_frames(engine: Engine, kind: str, queues: Sequence[str] | None, since_s: float,
            until_s: float, libraries: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    if kind == "snapshots":
        parts = iter_snapshot_exports(engine, queues, since_s, until_s, libraries=libraries)
        first = next(parts, None)
        yield first if first is not None else _empty(SNAPSHOT_EXPORT_FIELDS)
        yield from parts
    elif kind == "workers":
        yield worker_memory_export(engine, since_s, until_s, libraries=libraries)
    elif kind == "alerts":
        yield _alert_rows(engine, since_s, until_s, queues, libraries)
    else:
        raise ValueError(f"unknown export kind {kind!r} (expected snapshots, workers or alerts)")


def write_csv(engine: Engine, out: str | Path | IO[str], *, kind: str = "snapshots",
              queues: Sequence[str] | None = None, since_s: float, until_s: float,
              libraries: Sequence[str] | None = None) -> int:
    """Write an export as CSV to a path or a text stream, snapshots in chunks; returns the rows written.

    Text cells that would start a spreadsheet formula get a leading single quote (see spreadsheet_safe).

    `libraries` narrows every export to those libraries (alerts: see alert_queue_filter).
    """
    stream: IO[str]
    if isinstance(out, (str, Path)):
        stream = open(out, "w", newline="", encoding="utf-8")
    else:
        stream = out
    try:
        if kind == "snapshots":
            return _write_snapshots(engine, stream, queues, since_s, until_s, libraries)
        return write_frames(stream, export_frames(engine, kind, queues, since_s, until_s, libraries))
    finally:
        if stream is not out:
            stream.close()


def write_frames(stream: IO[str], frames: Iterator[pd.DataFrame]) -> int:
    """Export DataFrames (the first one's columns as the header) as CSV; returns the rows written. The
    workers and alerts exports take this path; for snapshots it is what the row path is tested against."""
    writer = csv.writer(stream, lineterminator=CSV_LINE_END)
    written = 0
    for index, part in enumerate(frames):
        if index == 0:
            writer.writerow(list(part.columns))
        writer.writerows(csv_cells(spreadsheet_safe(part)))
        written += len(part)
    return written


def export_csv_text(engine: Engine, *, kind: str = "snapshots", queues: Sequence[str] | None = None,
                    since_s: float, until_s: float, libraries: Sequence[str] | None = None) -> str:
    """The same export as CSV text (for download buttons)."""
    buffer = io.StringIO()
    write_csv(engine, buffer, kind=kind, queues=queues, since_s=since_s, until_s=until_s, libraries=libraries)
    return buffer.getvalue()
