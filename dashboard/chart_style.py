"""How the dashboard's Plotly figures look: time axes in the chosen zone, markers for sparse points, log
ticks with units, the light or dark template (pure: no streamlit, no database)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MARKERS_UP_TO_POINTS = 50
MARKER_SIZE_PX = 6
TEMPLATES = {"light": "plotly_white", "dark": "plotly_dark"}
# Backgrounds of the app's two themes (.streamlit/config.toml); the figures' paper and plot areas match them.
BACKGROUNDS = {"light": "#ffffff", "dark": "#0e1117"}


def time_axis_title(tz: str) -> str:
    """The title of every time axis, naming the zone: "Time (UTC)"."""
    return f"Time ({tz})"


def axis_times(times: pd.Series, tz: str) -> pd.Series:
    """Timezone-aware times as wall-clock times of `tz` without offset (plotly.js draws them as given)."""
    values = pd.to_datetime(times, utc=True)
    return values.dt.tz_convert(tz).dt.tz_localize(None)


def isolated(values: pd.Series) -> np.ndarray:
    """True for each measured value whose neighbours (before and after) are both missing."""
    present = values.notna().to_numpy()
    before = np.concatenate(([False], present[:-1]))
    after = np.concatenate((present[1:], [False]))
    return present & ~before & ~after


def marker_sizes(values: pd.Series) -> int | list[int]:
    """Marker sizes of a line trace: every point marked when the trace has few points, otherwise only the
    points a line cannot show (no measured neighbour)."""
    if int(values.notna().sum()) <= MARKERS_UP_TO_POINTS:
        return MARKER_SIZE_PX
    return [MARKER_SIZE_PX if alone else 0 for alone in isolated(values)]


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
    figure.update_layout(template=TEMPLATES[theme], paper_bgcolor=BACKGROUNDS[theme],
                         plot_bgcolor=BACKGROUNDS[theme])
    return figure
