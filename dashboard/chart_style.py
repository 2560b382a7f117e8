"""How the dashboard's Plotly figures look: time axes in the chosen zone, markers for sparse points, log
ticks with units, the light or dark template (pure: no streamlit, no database)."""
from __future__ import annotations

import math

import functools
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

MARKERS_UP_TO_POINTS = 50
MARKER_SIZE_PX = 6
TEMPLATES = {"light": "plotly_white", "dark": "plotly_dark"}
# Backgrounds of the app's two themes (.streamlit/config.toml); the figures' paper and plot areas match them.
BACKGROUNDS = {"light": "#ffffff", "dark": "#0e1117"}


def new_figure(*traces: go.BaseTraceType) -> go.Figure:
    """A figure that stores what it is given without plotly's per-property validation, which cost far more
    than the drawing data itself (a refresh of Queue detail spent most of its time validating). The figures
    are built from this package's fixed properties; the tests check every figure against the full schema."""
    figure = go.Figure(_validate=False)
    for trace in traces:
        figure.add_trace(trace)
    return figure


def scatter(**properties: Any) -> go.Scatter:
    """A scatter trace without per-property validation (see new_figure)."""
    return go.Scatter(_validate=False, **properties)


def bar(**properties: Any) -> go.Bar:
    """A bar trace without per-property validation (see new_figure)."""
    return go.Bar(_validate=False, **properties)


@functools.cache
def _template(name: str) -> dict[str, Any]:
    """A plotly template as plain JSON data (a figure without validation takes no template by name)."""
    return pio.templates[name].to_plotly_json()


def time_axis_title(tz: str) -> str:
    """The title of every time axis, naming the zone: "Time (UTC)"."""
    return f"Time ({tz})"


def axis_times(times: pd.Series, tz: str) -> pd.Series:
    """Timezone-aware times as wall-clock times of `tz` without offset (plotly.js draws them as given)."""
    values = pd.to_datetime(times, utc=True)
    return values.dt.tz_convert(tz).dt.tz_localize(None)


def axis_values(times: pd.Series, tz: str) -> np.ndarray:
    """axis_times as a datetime64[ms] array: a trace's x, which plotly encodes in bulk (a Series of
    timestamps is encoded one Python datetime at a time)."""
    return axis_times(times, tz).to_numpy(dtype="datetime64[ms]")


def isolated(values: pd.Series) -> np.ndarray:
    """True for each measured value whose neighbours (before and after) are both missing."""
    present = values.notna().to_numpy()
    before = np.concatenate(([False], present[:-1]))
    after = np.concatenate((present[1:], [False]))
    return present & ~before & ~after


def marker_sizes(values: pd.Series) -> int | np.ndarray:
    """Marker sizes of a line trace: every point marked when the trace has few points, otherwise only the
    points a line cannot show (no measured neighbour), as an array (copied and sent as one typed array)."""
    if int(values.notna().sum()) <= MARKERS_UP_TO_POINTS:
        return MARKER_SIZE_PX
    return np.where(isolated(values), MARKER_SIZE_PX, 0).astype(np.uint8)


def ms_text(value_ms: float) -> str:
    """A tick label with its unit: "1 ms", "100 ms", "1 s", "10 s", "2 min"."""
    if value_ms < 1:
        return f"{value_ms:g} ms"
    if value_ms < 1000:
        return f"{value_ms:.0f} ms"
    if value_ms < 60_000:
        return f"{value_ms / 1000:g} s"
    return f"{value_ms / 60_000:g} min"


def log_ms_ticks(low_ms: float, high_ms: float) -> tuple[list[float], list[str]]:
    """Tick values (powers of ten, with 2 and 5 between them when the span is short) and their labels."""
    low_ms, high_ms = max(low_ms, 1e-3), max(high_ms, low_ms * 1.0001)
    first, last = math.floor(math.log10(low_ms)), math.ceil(math.log10(high_ms))
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    values = [step * 10.0 ** power for power in range(first, last + 1) for step in steps]
    inside = [v for v in values if low_ms / 1.5 <= v <= high_ms * 1.5] or values
    return inside, [ms_text(v) for v in inside]


def themed(figure: go.Figure, theme: str | None) -> go.Figure:
    """The figure in the template and background of the app's theme ("light" or "dark")."""
    theme = theme if theme in TEMPLATES else "light"
    figure.layout.template = _template(TEMPLATES[theme])  # one value: update_layout walks a dict key by key
    figure.update_layout(paper_bgcolor=BACKGROUNDS[theme], plot_bgcolor=BACKGROUNDS[theme])
    return figure
