"""The previous-period overlay: the same window one day or one week earlier, read from the stored history
like the current one and shifted forward onto the current time axis."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from dashboard.ranges import Comparison
from storage.queries_series import queue_series, range_timing


def shifted(series: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    """The earlier series moved `comparison.shift_s` forward, attrs["label"] naming it ("previous week")."""
    moved = series.copy()
    if not moved.empty:
        moved["bucket_start_s"] = moved["bucket_start_s"].astype("float64") + comparison.shift_s
        moved["time"] = pd.to_datetime(moved["time"], utc=True) + pd.Timedelta(seconds=comparison.shift_s)
    moved.attrs.update(series.attrs, label=comparison.label)
    return moved


def previous_series(engine: Engine, queue_name: str, since_s: float, until_s: float,
                    comparison: Comparison | None, *, library: str | None = None) -> pd.DataFrame | None:
    """The queue's series over [since_s, until_s] shifted back by the comparison, drawn on the current axis;
    None without a comparison."""
    if comparison is None:
        return None
    earlier = queue_series(engine, queue_name, since_s - comparison.shift_s, until_s - comparison.shift_s,
                           library=library)
    return shifted(earlier, comparison)


def previous_histogram(engine: Engine, queue_name: str, since_s: float, until_s: float,
                       comparison: Comparison | None, *, library: str | None = None) -> pd.DataFrame | None:
    """The execution-time histogram of the earlier window; None without a comparison."""
    if comparison is None:
        return None
    timing = range_timing(engine, queue_name, since_s - comparison.shift_s, until_s - comparison.shift_s,
                          library=library)
    return timing["histogram"]
