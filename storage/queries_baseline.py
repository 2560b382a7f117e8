"""The stored values that "is this normal?" compares with: hourly rollups of the same hour on past weeks and days."""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, select

from core.baseline import FIGURES, Unusual, history_buckets_ms, unusual_figures, worst_first
from core.sketch import Sketch
from storage.queries_common import is_missing, reading
from storage.queries_latest import unavailable_of
from storage.schema import queue_rollups, series

HOURLY_S = 3600
FIELD_OF = {"waiting": "waiting", "error_rate_pct": "errorRate", "p95_processing_ms": "p95ProcessingTimeMs",
            "p95_wait_ms": "p95WaitTimeMs"}
"""The QueueMetrics field whose being unmeasured (a rollup's or snapshot's `unavailable`) leaves a figure out."""
History = dict[tuple[str, str], dict[str, dict[int, float]]]


def _hourly_values(row: Mapping[str, Any]) -> dict[str, float | None]:
    """The judged figures of one hourly rollup."""
    unmeasured = set(unavailable_of(row))
    ended = row["finished_delta"] + row["failed_delta"]
    processing = Sketch.from_bytes(row["processing_sketch"]) if row["processing_sketch"] else None
    wait = Sketch.from_bytes(row["wait_sketch"]) if row["wait_sketch"] else None
    values = {
        "waiting": float(row["waiting"]),
        "error_rate_pct": row["failed_delta"] / ended * 100.0 if ended > 0 else None,
        "p95_processing_ms": processing.quantile(0.95) if processing is not None and processing.count else None,
        "p95_wait_ms": wait.quantile(0.95) if wait is not None and wait.count else None,
    }
    return {name: None if FIELD_OF[name] in unmeasured else value for name, value in values.items()}


def baseline_history(engine: Engine, now_s: float) -> History:
    """(library, queue) -> figure -> hourly bucket start (ms) -> value, for the buckets a baseline may use."""
    buckets = history_buckets_ms(int(now_s * 1000))
    r = queue_rollups
    query = (select(series.c.library, series.c.queue_name, r.c.bucket_ms, r.c.waiting, r.c.finished_delta,
                    r.c.failed_delta, r.c.unavailable, r.c.processing_sketch, r.c.wait_sketch)
             .select_from(r.join(series, series.c.id == r.c.series_id))
             .where(and_(r.c.level_s == HOURLY_S, r.c.bucket_ms.in_(buckets))))
    history: History = {}
    with reading(engine) as conn:
        for row in conn.execute(query).mappings():
            figures = history.setdefault((row["library"], row["queue_name"]), {})
            for name, value in _hourly_values(row).items():
                if value is not None and math.isfinite(value):
                    figures.setdefault(name, {})[int(row["bucket_ms"])] = float(value)
    return history


def current_values(row: Mapping[str, Any]) -> dict[str, float | None]:
    """The judged figures of a latest-snapshot row (None where not measured)."""
    unmeasured = set(unavailable_of(row))
    values = {}
    for name in FIGURES:
        value = row.get(name)
        values[name] = None if FIELD_OF[name] in unmeasured or is_missing(value) else float(value)
    return values


def unusual_queues(latest: pd.DataFrame, history: History,
                   now_s: float | None = None) -> list[tuple[str, str, list[Unusual]]]:
    """(library, queue, unusual figures) of the current queues that differ from their usual level, worst first."""
    now_ms = int((time.time() if now_s is None else now_s) * 1000)
    if latest.empty:
        return []
    rows = latest[latest["current"]] if "current" in latest else latest
    judged = [(str(row["library"]), str(row["queue_name"]),
               unusual_figures(current_values(row), history.get((row["library"], row["queue_name"]), {}), now_ms))
              for row in rows.to_dict("records")]
    return worst_first(judged)
