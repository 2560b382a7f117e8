"""Queue history over a range: SQL-downsampled series, percentiles from merged sketches, histogram, outages.

Per bucket, depths (waiting, active, delayed, failed) are the bucket's maximum, so short peaks survive the
downsampling; interval deltas are summed, so throughput = sum(finished + failed) / sum(interval_s) * 60 and
the error and timeout rates are recomputed from the summed deltas. Percentiles merge the per-snapshot
sketches of the bucket (or of the whole range), never average stored percentiles. A figure the backend could
not measure in any snapshot of a bucket is NaN there, never 0 (see `queue_series`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, and_, func, or_, select

from core.sketch import Sketch, value_of
from storage.fields import QUEUE_METRICS_FIELDS
from storage.queries_common import MAX_POINTS, bucket_index, bucket_width_s, frame, reading, utc_times
from storage.queries_sketch import grouped_summary, merge_all
from storage.schema import cycles, queue_snapshots

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
SERIES_COLUMNS = [
    "bucket", "bucket_start_s", "time", "samples", "first_sampled_at_s", "last_sampled_at_s",
    "waiting", "active", "delayed", "failed", "completed", "interval_s", "finished_delta", "failed_delta",
    "timeout_delta", "jobs_per_minute", "error_rate_pct", "timeout_rate_pct", "oldest_waiting_ms",
    "avg_processing_ms", "p50_processing_ms", "p95_processing_ms", "p99_processing_ms",
    "avg_wait_ms", "p50_wait_ms", "p95_wait_ms", "p99_wait_ms",
]


SERIES_FIELD_COLUMNS = {field: column for field, column in QUEUE_METRICS_FIELDS if column in SERIES_COLUMNS
                        and column not in ("queue_name", "sampled_at_s")}


def _in_range(queue_name: str, since_s: float, until_s: float, library: str | None = None):
    t = queue_snapshots
    condition = and_(t.c.queue_name == queue_name, t.c.sampled_at_s >= since_s, t.c.sampled_at_s <= until_s)
    return condition if library is None else and_(condition, t.c.library == library)


def field_set(raw: object) -> frozenset[str]:
    """QueueMetrics field names of a stored `unavailable` text (comma-separated; None or "" for none)."""
    if not isinstance(raw, str):
        return frozenset()
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def queue_series(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                 max_points: int = MAX_POINTS, library: str | None = None) -> pd.DataFrame:
    """One row per epoch-aligned time bucket (at most `max_points`); attrs["bucket_width_s"] is the width.

    A QueueMetrics figure that no snapshot of a bucket measured (stored in `unavailable`) is NaN in that
    bucket; attrs["unavailable"] names, sorted, the figures unmeasured in every bucket. `library` None reads
    the name whichever library wrote it.
    """
    t = queue_snapshots
    width_s = bucket_width_s(until_s - since_s, max_points)
    bucket = bucket_index(engine, t.c.sampled_at_s, width_s).label("bucket")
    statement = (
        select(bucket, func.count().label("samples"),
               func.min(t.c.sampled_at_s).label("first_sampled_at_s"),
               func.max(t.c.sampled_at_s).label("last_sampled_at_s"),
               func.max(t.c.waiting).label("waiting"), func.max(t.c.active).label("active"),
               func.max(t.c.delayed).label("delayed"), func.max(t.c.failed).label("failed"),
               func.max(t.c.completed).label("completed"),
               func.sum(t.c.interval_s).label("interval_s"),
               func.sum(t.c.finished_delta).label("finished_delta"),
               func.sum(t.c.failed_delta).label("failed_delta"),
               func.sum(t.c.timeout_delta).label("timeout_delta"),
               func.max(t.c.oldest_waiting_ms).label("oldest_waiting_ms"),
               func.min(func.coalesce(t.c.unavailable, "")).label("unavailable_low"),
               func.max(func.coalesce(t.c.unavailable, "")).label("unavailable_high"))
        .where(_in_range(queue_name, since_s, until_s, library))
        .group_by(bucket).order_by(bucket)
    )
    with reading(engine) as conn:
        series = frame(conn, statement)
        timings = _bucket_timings(conn, queue_name, since_s, until_s, width_s, library)
        unmeasured = _bucket_unavailable(conn, series, queue_name, since_s, until_s, width_s, library)
    if series.empty:
        result = pd.DataFrame(columns=SERIES_COLUMNS)
        result.attrs.update(bucket_width_s=width_s, unavailable=())
        return result
    series["bucket_start_s"] = series["bucket"].astype("float64") * width_s
    series["time"] = utc_times(series["bucket_start_s"])
    ended = series["finished_delta"] + series["failed_delta"]
    seconds = series["interval_s"].astype("float64")
    series["jobs_per_minute"] = np.where(seconds > 0, ended / seconds.where(seconds > 0, 1.0) * 60.0, 0.0)
    safe_ended = ended.where(ended > 0, 1)
    # no job ended in the bucket: its rates were not measured (NaN), never 0 %
    series["error_rate_pct"] = np.where(ended > 0, series["failed_delta"] / safe_ended * 100.0, np.nan)
    series["timeout_rate_pct"] = np.where(ended > 0, series["timeout_delta"] / safe_ended * 100.0, np.nan)
    series = series.merge(timings, on="bucket", how="left")
    for column in SERIES_COLUMNS:
        if column not in series:
            series[column] = np.nan
    timing_columns = [c for c in SERIES_COLUMNS if c.endswith("_ms") and c != "oldest_waiting_ms"]
    result = series[SERIES_COLUMNS].astype({c: "float64" for c in timing_columns})
    for field, column in SERIES_FIELD_COLUMNS.items():
        missing = np.fromiter((field in fields for fields in unmeasured), dtype=bool, count=len(unmeasured))
        if missing.any():
            result[column] = result[column].astype("float64").where(~missing)
    everywhere = frozenset.intersection(*unmeasured) if unmeasured else frozenset()
    result.attrs.update(bucket_width_s=width_s, unavailable=tuple(sorted(everywhere)))
    return result


def _bucket_unavailable(conn: Connection, series: pd.DataFrame, queue_name: str, since_s: float,
                        until_s: float, width_s: float, library: str | None) -> list[frozenset[str]]:
    """Per series row, the fields no snapshot of its bucket measured.

    A bucket whose snapshots all stored the same `unavailable` text is read from the series' min/max; only
    when some bucket mixes several texts are the distinct texts per bucket read and intersected.
    """
    if series.empty:
        return []
    low, high = series["unavailable_low"].tolist(), series["unavailable_high"].tolist()
    if low == high:
        return [field_set(text) for text in low]
    t = queue_snapshots
    bucket = bucket_index(conn, t.c.sampled_at_s, width_s).label("bucket")
    statement = (select(bucket, func.coalesce(t.c.unavailable, "")).distinct()
                 .where(_in_range(queue_name, since_s, until_s, library)))
    per_bucket: dict[int, frozenset[str]] = {}
    for index, text in conn.execute(statement):
        fields = field_set(text)
        per_bucket[int(index)] = per_bucket[int(index)] & fields if int(index) in per_bucket else fields
    return [per_bucket.get(int(index), frozenset()) for index in series["bucket"]]


def _sketch_rows(conn: Connection, queue_name: str, since_s: float, until_s: float,
                 width_s: float | None = None, library: str | None = None) -> list[tuple]:
    """(bucket or id, processing blob, wait blob) of the range's snapshots holding a sketch, in time order."""
    t = queue_snapshots
    bucket = bucket_index(conn, t.c.sampled_at_s, width_s) if width_s else t.c.id
    statement = (select(bucket, t.c.processing_sketch, t.c.wait_sketch)
                 .where(and_(_in_range(queue_name, since_s, until_s, library),
                             or_(t.c.processing_sketch.is_not(None), t.c.wait_sketch.is_not(None))))
                 .order_by(t.c.sampled_at_s))
    return list(conn.execute(statement))


def _summary_values(sketch: Sketch) -> list[float | None]:
    return [sketch.mean, *sketch.quantiles([q for _, q in PERCENTILES])]


def _bucket_timings(conn: Connection, queue_name: str, since_s: float, until_s: float,
                    width_s: float, library: str | None = None) -> pd.DataFrame:
    """Mean and p50/p95/p99 of processing and wait time per bucket, from the bucket's merged sketches."""
    rows = _sketch_rows(conn, queue_name, since_s, until_s, width_s, library)
    buckets = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    parts = []
    for index, kind in ((1, "processing"), (2, "wait")):
        summary = grouped_summary([r[index] for r in rows], buckets, [q for _, q in PERCENTILES])
        renamed = {"mean": f"avg_{kind}_ms", **{f"q{q:g}": f"{name}_{kind}_ms" for name, q in PERCENTILES}}
        parts.append(summary[list(renamed)].rename(columns=renamed))
    timings = pd.concat(parts, axis=1).astype("float64")
    timings.index.name = "bucket"
    return timings.reset_index()


def range_sketches(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                   library: str | None = None) -> tuple[Sketch, Sketch]:
    """(processing, wait) sketches of every job that ended in the range, merged from the stored snapshots."""
    with reading(engine) as conn:
        rows = _sketch_rows(conn, queue_name, since_s, until_s, library=library)
    return merge_all([r[1] for r in rows]), merge_all([r[2] for r in rows])


def sketch_summary(sketch: Sketch) -> dict[str, Any]:
    """sampleCount, min, max, avg, p50, p95, p99 (ms) of a sketch; figures are None when it is empty."""
    avg, p50, p95, p99 = _summary_values(sketch)
    empty = sketch.count == 0
    return {"sampleCount": int(sketch.count), "min": None if empty else float(sketch.min),
            "max": None if empty else float(sketch.max), "avg": avg, "p50": p50, "p95": p95, "p99": p99}


def sketch_histogram(sketch: Sketch, bins: int = 40) -> pd.DataFrame:
    """Counts per bin (lower_ms, upper_ms, count) from the sketch's buckets; log-spaced for wide ranges."""
    if sketch.count == 0:
        return pd.DataFrame({"lower_ms": pd.Series(dtype="float64"), "upper_ms": pd.Series(dtype="float64"),
                             "count": pd.Series(dtype="int64")})
    keys = np.fromiter(sketch.buckets.keys(), dtype=np.int64)
    counts = np.fromiter(sketch.buckets.values(), dtype=np.float64)
    values = np.clip(np.array([value_of(int(k)) for k in keys]), sketch.min, sketch.max)
    low, high = float(sketch.min), float(sketch.max)
    if high <= low:
        edges = np.array([low, low + max(1.0, low * 0.01)])
    elif low > 0 and high / low > 20:
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, high, bins + 1)
    histogram, edges = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges, weights=counts)
    return pd.DataFrame({"lower_ms": edges[:-1], "upper_ms": edges[1:],
                         "count": histogram.round().astype("int64")})


def range_timing(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                 bins: int = 40, library: str | None = None) -> dict[str, Any]:
    """Whole-range processing and wait figures (see sketch_summary) and the execution-time histogram."""
    processing, wait = range_sketches(engine, queue_name, since_s, until_s, library=library)
    return {"processing": sketch_summary(processing), "wait": sketch_summary(wait),
            "histogram": sketch_histogram(processing, bins)}


def range_percentiles(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                      library: str | None = None) -> dict[str, Any]:
    """Whole-range processing and wait figures without the histogram."""
    processing, wait = range_sketches(engine, queue_name, since_s, until_s, library=library)
    return {"processing": sketch_summary(processing), "wait": sketch_summary(wait)}


def execution_histogram(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                        bins: int = 40, library: str | None = None) -> pd.DataFrame:
    """Histogram of processing times of the jobs that ended in the range."""
    return sketch_histogram(range_sketches(engine, queue_name, since_s, until_s, library=library)[0], bins)


def outages(engine: Engine, since_s: float, until_s: float) -> pd.DataFrame:
    """Failed cycles in the range, merged into spans: started_at_s, ended_at_s, failed_cycles, error.

    A span runs from its first failed cycle to the next successful cycle (or to its last failure's end).
    """
    c = cycles
    ok_cycles = cycles.alias("ok_cycles")
    next_ok = (select(func.min(ok_cycles.c.started_at_s))
               .where(and_(ok_cycles.c.ok.is_(True), ok_cycles.c.started_at_s > c.c.started_at_s))
               .scalar_subquery()).label("next_ok_s")
    statement = (select(c.c.started_at_s, c.c.finished_at_s, c.c.error, next_ok)
                 .where(and_(c.c.ok.is_(False), c.c.finished_at_s >= since_s, c.c.started_at_s <= until_s))
                 .order_by(c.c.started_at_s))
    with reading(engine) as conn:
        failed = frame(conn, statement, ["started_at_s", "finished_at_s", "error", "next_ok_s"])
    columns = ["started_at_s", "ended_at_s", "failed_cycles", "error", "start", "end"]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    failed["span"] = failed["next_ok_s"].fillna(math.inf)
    spans = failed.groupby("span", sort=True).agg(
        started_at_s=("started_at_s", "min"), last_finished_s=("finished_at_s", "max"),
        failed_cycles=("started_at_s", "size"), error=("error", "last")).reset_index()
    spans["ended_at_s"] = np.where(np.isfinite(spans["span"]), spans["span"], spans["last_finished_s"])
    spans["start"] = utc_times(spans["started_at_s"])
    spans["end"] = utc_times(spans["ended_at_s"])
    return spans[columns].reset_index(drop=True)
