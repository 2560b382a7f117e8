"""Queue detail's history reads, with the settled part of a long range read once and kept.

A chart's buckets are epoch-aligned, so a range splits into three parts read apart and joined bucket for
bucket into what one read of the whole range gives: the partial first bucket, the whole buckets that ended
before the current one (settled: the collector writes only the current bucket), and the newest buckets.
The settled part is kept for SETTLED_TTL_S and shared by every viewer of the same queue and range; a 10 s
refresh then reads only the two short edges. The whole-range percentiles and histogram are joined the same
way, from the parts' merged sketches, and the timeout advice's sketch of every stored run time from the
hours before the previous one (kept) and the rest. Ranges drawn with points of less than
SETTLED_MIN_WIDTH_S are cheap and read whole.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from core.sketch import Sketch
from storage import queries
from storage.queries_capacity import stored_processing_sketch
from storage.queries_series import series_width_s

POINTS_PER_REFRESH = 10
"""A range's charts refresh every tenth of a point (points of 10 min: every minute), at least as often as
the queue's figures now and at most every MAX_REFRESH_S: within a point's width a refresh only nudges the
newest point."""
MAX_REFRESH_S = 120.0
SETTLED_TTL_S = 900
"""How long the settled part is kept (a late row in a settled bucket shows at most this late)."""
SETTLED_MIN_WIDTH_S = 60.0
SETTLED_ENTRIES = 64
HOUR_S = 3600.0
_BEFORE_S = 0.001  # a read's end is inclusive: it ends 1 ms before the next part's first snapshot


def refresh_s(span_s: float, every_s: float) -> float:
    """Seconds between refreshes of a chart of `span_s` (see POINTS_PER_REFRESH); `every_s` the shortest."""
    return max(every_s, min(MAX_REFRESH_S, series_width_s(span_s) / POINTS_PER_REFRESH))


def _settled_bounds(since_s: float, until_s: float) -> tuple[float, tuple[float, float] | None]:
    """The range's bucket width and its parts (see _parts); no parts for points narrower than
    SETTLED_MIN_WIDTH_S."""
    width_s = series_width_s(until_s - since_s)
    return width_s, _parts(since_s, until_s, width_s) if width_s >= SETTLED_MIN_WIDTH_S else None


def _parts(since_s: float, until_s: float, width_s: float) -> tuple[float, float] | None:
    """(first whole bucket's start, current bucket's start less one bucket), or None when no whole bucket
    lies between the two edges."""
    first_s = math.ceil(since_s / width_s) * width_s
    settled_end_s = (math.floor(until_s / width_s) - 1) * width_s
    return (first_s, settled_end_s) if settled_end_s > first_s else None


@st.cache_data(ttl=SETTLED_TTL_S, max_entries=SETTLED_ENTRIES, show_spinner=False)
def _settled_series(_engine: Engine, db_url: str, library: str, queue: str, first_s: float, end_s: float,
                    width_s: float) -> pd.DataFrame:
    return queries.queue_series(_engine, queue, first_s, end_s - _BEFORE_S, library=library, width_s=width_s)


@st.cache_data(ttl=SETTLED_TTL_S, max_entries=SETTLED_ENTRIES, show_spinner=False)
def _settled_sketches(_engine: Engine, db_url: str, library: str, queue: str, first_s: float,
                      end_s: float) -> tuple[Sketch, Sketch]:
    return queries.range_sketches(_engine, queue, first_s, end_s - _BEFORE_S, library=library)


def stored_processing(engine: Engine, queue: str, library: str, now_s: float) -> Sketch:
    """The sketch of every stored run time of the queue (the timeout advice's), the hours before the
    previous one read once and kept."""
    end_s = (math.floor(now_s / HOUR_S) - 1) * HOUR_S
    sketch = Sketch()
    sketch.merge(_settled_sketches(engine, str(engine.url), library, queue, 0.0, end_s)[0])
    sketch.merge(stored_processing_sketch(engine, queue, library, end_s, now_s))
    return sketch


def joined_series(parts: list[pd.DataFrame], width_s: float) -> pd.DataFrame:
    """Series of consecutive parts as one: rows in time order; attrs["unavailable"] the fields that every
    non-empty part left unmeasured."""
    filled = [part for part in parts if not part.empty]
    if not filled:
        return parts[-1]
    joined = pd.concat(filled, ignore_index=True) if len(filled) > 1 else filled[0].copy()
    everywhere = frozenset.intersection(*(frozenset(part.attrs.get("unavailable", ())) for part in filled))
    joined.attrs.update(bucket_width_s=width_s, unavailable=tuple(sorted(everywhere)))
    return joined


def queue_series(engine: Engine, queue: str, since_s: float, until_s: float, *,
                 library: str) -> pd.DataFrame:
    """queries.queue_series of the range, its settled part from the cache."""
    width_s, parts = _settled_bounds(since_s, until_s)
    if parts is None:
        return queries.queue_series(engine, queue, since_s, until_s, library=library)
    first_s, end_s = parts
    return joined_series([
        queries.queue_series(engine, queue, since_s, first_s - _BEFORE_S, library=library, width_s=width_s),
        _settled_series(engine, str(engine.url), library, queue, first_s, end_s, width_s),
        queries.queue_series(engine, queue, end_s, until_s, library=library, width_s=width_s),
    ], width_s)


def range_timing(engine: Engine, queue: str, since_s: float, until_s: float, *,
                 library: str) -> dict[str, Any]:
    """queries.range_timing of the range (whole-range figures and histogram), its settled part cached."""
    _, parts = _settled_bounds(since_s, until_s)
    if parts is None:
        return queries.range_timing(engine, queue, since_s, until_s, library=library)
    first_s, end_s = parts
    settled = _settled_sketches(engine, str(engine.url), library, queue, first_s, end_s)
    processing, wait = Sketch(), Sketch()
    head = queries.range_sketches(engine, queue, since_s, first_s - _BEFORE_S, library=library)
    tail = queries.range_sketches(engine, queue, end_s, until_s, library=library)
    for part in (head, settled, tail):
        processing.merge(part[0])
        wait.merge(part[1])
    return {"processing": queries.sketch_summary(processing), "wait": queries.sketch_summary(wait),
            "histogram": queries.sketch_histogram(processing)}
