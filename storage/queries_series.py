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
from sqlalchemy import Connection, Engine, and_, func, literal, select

from core.sketch import Sketch, value_of
from storage.fields import QUEUE_METRICS_FIELDS
from storage.layout import series_of
from storage.queries_common import MAX_POINTS, bucket_width_s, frame, reading, utc_times
from storage.queries_sketch import grouped_summary, merge_all
from storage.rollups import MAX_COLUMNS, RAW, SUM_COLUMNS, levels_for, plan_pieces, sample_columns
from storage.schema import ROLLUP_LEVELS_S, cycles, queue_rollups, queue_sample_blobs, queue_samples

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
_PIECE_COLUMNS = ["at_ms", "samples", "first_at_ms", "last_at_ms", *MAX_COLUMNS, *SUM_COLUMNS, "unavailable",
                  "processing_sketch", "wait_sketch"]
_END_MS = 2**62


def field_set(raw: object) -> frozenset[str]:
    """QueueMetrics field names of a stored `unavailable` text (comma-separated; None or "" for none)."""
    if not isinstance(raw, str):
        return frozenset()
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def range_ms(since_s: float, until_s: float) -> tuple[int, int]:
    """[first, end) in integer ms of the snapshots sampled within [since_s, until_s]."""
    first = 0 if not math.isfinite(since_s) or since_s < 0 else math.ceil(since_s * 1000.0 - 1e-6)
    end = _END_MS if not math.isfinite(until_s) else math.floor(until_s * 1000.0 + 1e-6) + 1
    return max(0, first), max(0, min(end, _END_MS))


def _piece(level_s: int, ids: list[int], lo_ms: int, hi_ms: int, numbers: bool):
    """The select of one piece: raw snapshots (with blobs) or rollup buckets, under _PIECE_COLUMNS."""
    if level_s == RAW:
        t, b = queue_samples, queue_sample_blobs
        sketches = [b.c.processing_sketch, b.c.wait_sketch]
        if not numbers:
            return (select(b.c.sampled_at_ms, *sketches)
                    .where(and_(b.c.series_id.in_(ids), b.c.sampled_at_ms >= lo_ms, b.c.sampled_at_ms < hi_ms)))
        joined = t.outerjoin(b, and_(b.c.series_id == t.c.series_id, b.c.sampled_at_ms == t.c.sampled_at_ms))
        return (select(t.c.sampled_at_ms, literal(1).label("samples"), t.c.sampled_at_ms.label("first_at_ms"),
                       t.c.sampled_at_ms.label("last_at_ms"), *sample_columns(t),
                       t.c.unavailable, *sketches)
                .select_from(joined)
                .where(and_(t.c.series_id.in_(ids), t.c.sampled_at_ms >= lo_ms, t.c.sampled_at_ms < hi_ms)))
    r = queue_rollups
    condition = and_(r.c.level_s == level_s, r.c.series_id.in_(ids), r.c.bucket_ms >= lo_ms, r.c.bucket_ms < hi_ms)
    if not numbers:
        return select(r.c.bucket_ms, r.c.processing_sketch, r.c.wait_sketch).where(condition)
    return select(r.c.bucket_ms, r.c.samples, r.c.first_at_ms, r.c.last_at_ms,
                  *[r.c[c] for c in MAX_COLUMNS + SUM_COLUMNS], r.c.unavailable, r.c.processing_sketch,
                  r.c.wait_sketch).where(condition)


def _read_pieces(conn: Connection, queue_name: str, library: str | None, since_s: float, until_s: float,
                 width_s: float | None, numbers: bool = True) -> pd.DataFrame:
    """The range as rollup buckets of the coarsest usable level plus finer edges (see rollups.plan_pieces)."""
    columns = _PIECE_COLUMNS if numbers else ["at_ms", "processing_sketch", "wait_sketch"]
    ids = series_of(conn, queue_name, library)
    first_ms, end_ms = range_ms(since_s, until_s)
    parts = []
    if ids:
        for level_s, lo_ms, hi_ms in plan_pieces(first_ms, end_ms, levels_for(width_s)):
            rows = conn.execute(_piece(level_s, ids, lo_ms, hi_ms, numbers)).fetchall()
            if rows:
                parts.append(pd.DataFrame(list(map(tuple, rows)), columns=columns))  # tuples: ~3x faster
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _intersected(texts: pd.Series) -> frozenset[str]:
    fields: frozenset[str] | None = None
    for text in texts:
        fields = field_set(text) if fields is None else fields & field_set(text)
    return fields or frozenset()


def _unmeasured(pieces: pd.DataFrame, buckets: pd.Index) -> list[frozenset[str]]:
    """Per bucket (in `buckets` order), the fields none of its pieces measured; a bucket with one piece that
    measured everything (unavailable NULL) has none, so only buckets without such a piece are looked into."""
    null = pieces["unavailable"].isna().to_numpy()
    out = dict.fromkeys(buckets.tolist(), frozenset())
    if not null.all():
        complete = pieces["bucket"].isin(pieces.loc[null, "bucket"].unique()).to_numpy()
        for bucket, texts in pieces.loc[~complete].groupby("bucket")["unavailable"]:
            out[bucket] = _intersected(texts)
    return [out[bucket] for bucket in buckets.tolist()]


def series_width_s(span_s: float, max_points: int = MAX_POINTS) -> float:
    """The bucket width of a queue chart: bucket_width_s, moved onto the rollups where that keeps the points
    within `max_points` and at least half as many: a width of 10 min or more becomes a multiple of the 10-min
    level, and one that a whole level covers within twice the width becomes that level, so a long range is
    read as one stored bucket per point instead of several merged (30 days: 720 hourly points)."""
    width_s = bucket_width_s(span_s, max_points)
    for level_s in sorted(ROLLUP_LEVELS_S):
        if width_s <= level_s <= 2 * width_s and level_s >= 600:
            return float(level_s)
    if width_s > 600 and width_s % 600:
        return float(math.ceil(width_s / 600) * 600)
    return width_s


def queue_series(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                 max_points: int = MAX_POINTS, library: str | None = None,
                 width_s: float | None = None) -> pd.DataFrame:
    """One row per epoch-aligned time bucket (at most `max_points`); attrs["bucket_width_s"] is the width.

    A QueueMetrics figure that no snapshot of a bucket measured (stored in `unavailable`) is NaN in that
    bucket; attrs["unavailable"] names, sorted, the figures unmeasured in every bucket. `library` None reads
    the name whichever library wrote it. Buckets come from the coarsest rollup level dividing the width, the
    range's edges from finer levels and the snapshots themselves. `width_s` sets the bucket width (a part of a
    longer range read apart, bucket for bucket the same as in the whole range's read).
    """
    width_s = series_width_s(until_s - since_s, max_points) if width_s is None else float(width_s)
    with reading(engine) as conn:
        pieces = _read_pieces(conn, queue_name, library, since_s, until_s, width_s)
    if pieces.empty:
        result = pd.DataFrame(columns=SERIES_COLUMNS)
        result.attrs.update(bucket_width_s=width_s, unavailable=())
        return result
    width_ms = int(round(width_s * 1000))
    pieces["bucket"] = pieces["at_ms"].astype("int64") // width_ms
    grouped = pieces.groupby("bucket", sort=True)
    series = grouped.agg(samples=("samples", "sum"), first_at_ms=("first_at_ms", "min"),
                         last_at_ms=("last_at_ms", "max"), **{c: (c, "max") for c in MAX_COLUMNS},
                         **{c: (c, "sum") for c in SUM_COLUMNS})
    unmeasured = _unmeasured(pieces, series.index)
    timings = _bucket_timings(pieces)
    series = series.reset_index()
    series["first_sampled_at_s"] = series["first_at_ms"].astype("float64") / 1000.0
    series["last_sampled_at_s"] = series["last_at_ms"].astype("float64") / 1000.0
    series["interval_s"] = series["interval_ms"].astype("float64") / 1000.0
    series["bucket_start_s"] = series["bucket"].astype("float64") * width_s
    series["time"] = utc_times(series["bucket_start_s"])
    ended = series["finished_delta"] + series["failed_delta"]
    seconds = series["interval_s"]
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
    integer_columns = ["samples", "waiting", "active", "delayed", "failed", "completed", "finished_delta",
                       "failed_delta", "timeout_delta", "bucket"]
    result = series[SERIES_COLUMNS].astype({**{c: "float64" for c in timing_columns + ["oldest_waiting_ms"]},
                                            **{c: "int64" for c in integer_columns}})
    for field, column in SERIES_FIELD_COLUMNS.items():
        missing = np.fromiter((field in fields for fields in unmeasured), dtype=bool, count=len(unmeasured))
        if missing.any():
            result[column] = result[column].astype("float64").where(~missing)
    everywhere = frozenset.intersection(*unmeasured) if unmeasured else frozenset()
    result.attrs.update(bucket_width_s=width_s, unavailable=tuple(sorted(everywhere)))
    return result


def _summary_values(sketch: Sketch) -> list[float | None]:
    return [sketch.mean, *sketch.quantiles([q for _, q in PERCENTILES])]


def _bucket_timings(pieces: pd.DataFrame) -> pd.DataFrame:
    """Mean and p50/p95/p99 of processing and wait time per bucket, from the bucket's merged sketches."""
    buckets = pieces["bucket"].to_numpy(dtype=np.int64)
    parts = []
    for kind in ("processing", "wait"):
        summary = grouped_summary(pieces[f"{kind}_sketch"].tolist(), buckets, [q for _, q in PERCENTILES])
        renamed = {"mean": f"avg_{kind}_ms", **{f"q{q:g}": f"{name}_{kind}_ms" for name, q in PERCENTILES}}
        parts.append(summary[list(renamed)].rename(columns=renamed))
    timings = pd.concat(parts, axis=1).astype("float64")
    timings.index.name = "bucket"
    return timings.reset_index()


def range_sketches(engine: Engine, queue_name: str, since_s: float, until_s: float, *,
                   library: str | None = None) -> tuple[Sketch, Sketch]:
    """(processing, wait) sketches of every job that ended in the range, merged from hourly rollups and the
    range's edges at finer levels."""
    with reading(engine) as conn:
        rows = _read_pieces(conn, queue_name, library, since_s, until_s, None, numbers=False)
    return merge_all(rows["processing_sketch"].tolist()), merge_all(rows["wait_sketch"].tolist())


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
