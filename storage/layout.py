"""Version 5's layout: snapshot rows to and from the compact tables, series ids, the legacy-named columns."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import (
    ColumnElement, Connection, Float, Select, Table, and_, case, cast, func, insert, literal, select,
)

from storage.schema import (
    DELTA_COLUMNS, DEPTH_COLUMNS, MICRO_COLUMNS, MILLI_COLUMNS, STATUS_CODES, STATUS_NAMES,
    micro_name, queue_latest, queue_sample_blobs, queue_samples, series,
)

SeriesKey = tuple[str, str]  # (library, queue_name)
BLOB_COLUMNS = ("processing_sketch", "wait_sketch", "recent_processing_ms")
CURSOR_COLUMNS = ("finished_cursor", "failed_cursor", "cursor_state")


def to_ms(at_s: float) -> int:
    """Epoch seconds as integer milliseconds."""
    return int(round(float(at_s) * 1000.0))


def _milli(value: Any) -> int | None:
    """Thousandths as an integer; None stays None (a NOT NULL column then refuses the row)."""
    return None if value is None else int(round(float(value) * 1000.0))


def sample_values(row: Mapping[str, Any], series_id: int, cycle_id: int) -> dict[str, Any]:
    """A snapshot row (core.derive.snapshot_row's keys) as a queue_samples row."""
    issues = row.get("issues")
    values: dict[str, Any] = {
        "series_id": series_id, "sampled_at_ms": to_ms(row["sampled_at_s"]), "cycle_id": cycle_id,
        "interval_ms": _milli(row["interval_s"]),
        "status": STATUS_CODES.get(str(row.get("status")), 0),
        "issues": None if issues in (None, "", "[]") else issues,
        "unavailable": row.get("unavailable") or None, "details": row.get("details"),
    }
    for name in DEPTH_COLUMNS + DELTA_COLUMNS:
        values[name] = row.get(name)
    for name in MILLI_COLUMNS:
        values[f"{name}_m"] = _milli(row.get(name))
    for name in MICRO_COLUMNS:  # ms as integer microseconds
        values[micro_name(name)] = _milli(row.get(name))
    return values


def blob_values(row: Mapping[str, Any], series_id: int) -> dict[str, Any] | None:
    """The row's sketches and recent executions as a queue_sample_blobs row; None when it has none."""
    if all(row.get(name) is None for name in BLOB_COLUMNS):
        return None
    return {"series_id": series_id, "sampled_at_ms": to_ms(row["sampled_at_s"]),
            **{name: row.get(name) for name in BLOB_COLUMNS}}


def series_ids(conn: Connection, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int]:
    """Ids of these (library, queue_name) series, created when new."""
    wanted = set(keys)
    if not wanted:
        return {}
    names = sorted({name for _, name in wanted})
    found = {(library, name): sid for sid, library, name in conn.execute(
        select(series.c.id, series.c.library, series.c.queue_name).where(series.c.queue_name.in_(names)))}
    for library, name in sorted(wanted - set(found)):
        found[(library, name)] = conn.execute(
            insert(series).values(library=library, queue_name=name)).inserted_primary_key[0]
    return found


def seconds(column: ColumnElement) -> ColumnElement:
    """Integer milliseconds (or thousandths) as float units: the exact float of value / 1000."""
    return cast(column, Float) / literal(1000.0, Float)


def legacy_columns(t: Table, blobs: Table | None = None, *, with_cursors: bool = False,
                   with_blobs: bool = False) -> list[ColumnElement]:
    """Expressions giving the snapshot columns of versions 1-4 (queue_name, sampled_at_s, status text, ...)
    from a queue_samples-shaped table `t` joined to `series` (and to `blobs` when `with_blobs`)."""
    status = case({code: name for code, name in STATUS_NAMES.items()}, value=t.c.status, else_="healthy")
    columns: list[ColumnElement] = [
        t.c.cycle_id, series.c.queue_name, series.c.library,
        seconds(t.c.sampled_at_ms).label("sampled_at_s"),
        *[t.c[name] for name in DEPTH_COLUMNS],
        seconds(t.c.interval_ms).label("interval_s"),
        *[t.c[name] for name in DELTA_COLUMNS],
        *[seconds(t.c[f"{name}_m"]).label(name) for name in MILLI_COLUMNS[:3]],
        *[seconds(t.c[micro_name(name)]).label(name) for name in MICRO_COLUMNS],
        *[seconds(t.c[f"{name}_m"]).label(name) for name in MILLI_COLUMNS[3:]],
        status.label("status"), func.coalesce(t.c.issues, "[]").label("issues"),
        t.c.unavailable, t.c.details,
    ]
    if with_blobs and blobs is not None:
        columns += [blobs.c[name] for name in BLOB_COLUMNS]
    if with_cursors:
        columns += [t.c[name] for name in CURSOR_COLUMNS]
    return columns


def latest_select(columns: Sequence[ColumnElement] | None = None) -> Select:
    """queue_latest joined to series, with the legacy columns by default (one row per queue)."""
    t = queue_latest
    chosen = list(columns) if columns is not None else legacy_columns(t, with_cursors=True)
    return select(*chosen).select_from(t.join(series, series.c.id == t.c.series_id))


def samples_join(blobs: bool = False):
    """queue_samples joined to series (and, left, to its blobs)."""
    t = queue_samples
    joined = t.join(series, series.c.id == t.c.series_id)
    if blobs:
        b = queue_sample_blobs
        joined = joined.outerjoin(b, and_(b.c.series_id == t.c.series_id, b.c.sampled_at_ms == t.c.sampled_at_ms))
    return joined


def snapshots_view_select() -> Select:
    """The select behind the queue_snapshots view: every stored snapshot under the legacy columns."""
    t, b, latest = queue_samples, queue_sample_blobs, queue_latest
    cursors = [
        select(latest.c[name]).where(and_(latest.c.series_id == t.c.series_id,
                                          latest.c.sampled_at_ms == t.c.sampled_at_ms))
        .scalar_subquery().label(name) for name in CURSOR_COLUMNS
    ]
    return select(*legacy_columns(t, b, with_blobs=True), *cursors).select_from(samples_join(blobs=True))


def series_condition(queue_name: str, library: str | None) -> ColumnElement[bool]:
    """The series of one queue name, of one library or of any."""
    condition = series.c.queue_name == queue_name
    return condition if library is None else and_(condition, series.c.library == library)


def series_of(conn: Connection, queue_name: str, library: str | None) -> list[int]:
    """Ids of the series of a queue name (one library's, or every library's when None)."""
    return [sid for (sid,) in conn.execute(select(series.c.id).where(series_condition(queue_name, library)))]


def legacy_frame(raw: "pd.DataFrame", names: Mapping[int, SeriesKey]) -> "pd.DataFrame":
    """queue_samples rows (a DataFrame of its columns) under the legacy snapshot columns, computed in numpy."""
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=raw.index)
    keys = [names[int(sid)] for sid in raw["series_id"]]
    if "cycle_id" in raw:
        out["cycle_id"] = raw["cycle_id"]
    out["queue_name"] = [name for _, name in keys]
    out["library"] = [library for library, _ in keys]
    out["sampled_at_s"] = raw["sampled_at_ms"].to_numpy(dtype=np.float64) / 1000.0
    for name in DEPTH_COLUMNS + DELTA_COLUMNS:
        out[name] = raw[name]
    out["interval_s"] = raw["interval_ms"].to_numpy(dtype=np.float64) / 1000.0
    for name in MILLI_COLUMNS:
        out[name] = raw[f"{name}_m"].to_numpy(dtype=np.float64) / 1000.0
    for name in MICRO_COLUMNS:
        out[name] = pd.to_numeric(raw[micro_name(name)], errors="coerce").to_numpy(dtype=np.float64) / 1000.0
    out["status"] = raw["status"].map(STATUS_NAMES).fillna("healthy")
    for name in ("issues", "details"):
        if name in raw:
            out[name] = raw[name].fillna("[]") if name == "issues" else raw[name]
    out["unavailable"] = raw["unavailable"]
    return out
