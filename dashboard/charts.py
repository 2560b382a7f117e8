"""Plotly figures built from the query DataFrames (pure: no streamlit, no database)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.chart_style import (
    axis_times, axis_values, bar, log_ms_ticks, marker_sizes, new_figure, scatter, time_axis_title,
)
from dashboard.formatting import plotly_text
from storage.fields import QUEUE_METRICS_FIELDS

CHART_HEIGHT_PX = 300
DEPTH_SERIES = (("waiting", "Waiting", "#1f77b4"), ("active", "Active", "#2ca02c"),
                ("delayed", "Delayed", "#9467bd"), ("failed", "Failed", "#d62728"))
PERCENTILE_SERIES = (("p50", "p50", "#2ca02c"), ("p95", "p95", "#ff7f0e"), ("p99", "p99", "#d62728"))
OUTAGE_COLOUR = "rgba(214, 39, 40, 0.12)"
FIELD_OF_COLUMN = {column: field for field, column in QUEUE_METRICS_FIELDS}
NOT_MEASURED = "Not measured for this queue"
NOTHING_IN_RANGE = "Nothing measured in this range"
TIER_COLOURS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#7f7f7f")
PREVIOUS_OPACITY = 0.45
PREVIOUS_LEGEND_COLOUR = "#8c8c8c"
SOFT_COLOUR, HARD_COLOUR = "#e67e00", "#d62728"
RSS_HEADROOM = 1.15
TIME_LEGEND_PX = 40
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.45, "xanchor": "left", "x": 0.0}


def _layout(figure: go.Figure, title: str, y_title: str, tz: str | None = None) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"}, height=CHART_HEIGHT_PX,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        yaxis={"title": {"text": y_title}, "rangemode": "tozero"}, uirevision="keep-zoom",
    )
    if tz is not None:  # a time chart: the legend under the axis, so that it never covers the title
        figure.update_xaxes(title={"text": time_axis_title(tz)}, hoverformat="%Y-%m-%d %H:%M:%S")
        figure.update_layout(height=CHART_HEIGHT_PX + TIME_LEGEND_PX, legend=LEGEND_BELOW)
    return figure


def with_gaps(series: pd.DataFrame, width_s: float | None = None) -> pd.DataFrame:
    """The series with an empty row after every gap wider than three buckets, so lines break across gaps."""
    if len(series) < 2 or "bucket_start_s" not in series:
        return series
    starts = series["bucket_start_s"].astype("float64").to_numpy()
    steps = np.diff(starts)
    typical = float(np.median(steps)) if len(steps) else 0.0
    limit = 3 * max(width_s or 0.0, typical)
    gap_after = np.nonzero(steps > limit)[0]
    if not len(gap_after) or limit <= 0:
        return series
    fillers = pd.DataFrame({"bucket_start_s": starts[gap_after] + typical})
    fillers["time"] = pd.to_datetime(fillers["bucket_start_s"], unit="s", utc=True)
    combined = pd.concat([series, fillers], ignore_index=True)
    return combined.sort_values("bucket_start_s", kind="stable").reset_index(drop=True)


def shade_outages(figure: go.Figure, outages: pd.DataFrame | None, tz: str = "UTC") -> go.Figure:
    """Shade each collector outage (Redis unreachable) on a time chart."""
    if outages is None or outages.empty:
        return figure
    starts, ends = (axis_times(outages[edge], tz).dt.floor("ms") for edge in ("start", "end"))
    for start, end in zip(starts, ends):
        figure.add_vrect(x0=start, x1=end, fillcolor=OUTAGE_COLOUR, line_width=0, layer="below",
                         annotation_text="outage", annotation_position="top left",
                         annotation_font_size=10)
    return figure


def with_note(figure: go.Figure, text: str) -> go.Figure:
    """The figure without axes, saying `text` in its middle (for a chart with nothing to draw)."""
    figure.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                          font={"size": 14, "color": "#7f7f7f"})
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(showlegend=False)
    return figure


def charted_columns() -> list[str]:
    """Series columns drawn by the queue charts (depth, throughput, rates, processing time)."""
    rates = ["jobs_per_minute", "error_rate_pct", "timeout_rate_pct"]
    return ([column for column, _, _ in DEPTH_SERIES] + rates
            + [f"{p}_processing_ms" for p, _, _ in PERCENTILE_SERIES])


def undrawn_fields(series: pd.DataFrame) -> list[str]:
    """QueueMetrics fields of the charts that are left out because no point of the series measured them."""
    unmeasured = unmeasured_columns(series)
    return [FIELD_OF_COLUMN[column] for column in charted_columns() if column in unmeasured]


def unmeasured_columns(series: pd.DataFrame) -> set[str]:
    """Series columns whose QueueMetrics field no point of the series measured (attrs["unavailable"])."""
    unavailable = set(series.attrs.get("unavailable", ()))
    return {column for column, field in FIELD_OF_COLUMN.items() if field in unavailable}


def point_counts(data: pd.DataFrame) -> np.ndarray:
    """Per point: jobs that ended in its bucket and snapshots behind it (the hover's customdata)."""
    columns = [data[c] if c in data else pd.Series(np.nan, index=data.index)
               for c in ("finished_delta", "failed_delta", "samples")]
    ended = columns[0].astype("float64") + columns[1].astype("float64")
    return np.stack([ended.to_numpy(), columns[2].astype("float64").to_numpy()], axis=-1)


def _hover(suffix: str, counted: str, name: str) -> str:
    count = ("%{customdata[1]:,.0f} snapshots" if counted == "snapshots"
             else "%{customdata[0]:,.0f} jobs ended")
    return f"%{{y:,.2f}}{suffix} · {count}<extra>{name}</extra>"


def _line_traces(figure: go.Figure, data: pd.DataFrame, drawn: list[tuple[str, str, str]], tz: str,
                 suffix: str, counted: str, label: str | None = None) -> None:
    """One line per drawn column; with `label` ("previous week") dashed and faded, named after it."""
    x, counts = axis_values(data["time"], tz), point_counts(data)
    for column, name, colour in drawn:
        shown = name if label is None else f"{name}, {label}"
        line = {"color": colour, "width": 1.8} if label is None else {"color": colour, "width": 1.4,
                                                                        "dash": "dash"}
        figure.add_trace(scatter(
            x=x, y=data[column], name=shown, mode="lines+markers", line=line, customdata=counts,
            marker={"color": colour, "size": marker_sizes(data[column])},
            opacity=1.0 if label is None else PREVIOUS_OPACITY, showlegend=label is None,
            legendgroup="previous" if label is not None else None,
            hovertemplate=_hover(suffix, counted, plotly_text(shown))))
    if label is not None and drawn:  # one legend entry for the earlier traces; clicking it hides them all
        figure.add_trace(scatter(x=[None], y=[None], name=label, mode="lines", legendgroup="previous",
                                    line={"color": PREVIOUS_LEGEND_COLOUR, "dash": "dash", "width": 1.4},
                                    hoverinfo="skip"))


def _lines(series: pd.DataFrame, columns: tuple[tuple[str, str, str], ...], title: str, y_title: str,
           outages: pd.DataFrame | None, suffix: str = "", *, tz: str = "UTC",
           previous: pd.DataFrame | None = None, counted: str = "jobs") -> go.Figure:
    data = with_gaps(series, series.attrs.get("bucket_width_s"))
    drawn = [c for c in columns if c[0] not in unmeasured_columns(series)]
    figure = new_figure()
    _line_traces(figure, data, drawn, tz, suffix, counted)
    if previous is not None and not previous.empty:
        earlier = with_gaps(previous, previous.attrs.get("bucket_width_s"))
        _line_traces(figure, earlier, [c for c in drawn if c[0] in earlier], tz, suffix, counted,
                     previous.attrs.get("label", "previous period"))
    figure = _layout(figure, title, y_title, tz)
    if not drawn:
        return with_note(figure, NOT_MEASURED)
    if all(series[column].isna().all() for column, _, _ in drawn):
        return with_note(figure, NOTHING_IN_RANGE)
    return shade_outages(figure, outages, tz)


def depth_figure(series: pd.DataFrame, outages: pd.DataFrame | None = None, *, tz: str = "UTC",
                 previous: pd.DataFrame | None = None) -> go.Figure:
    """Waiting, active, delayed and failed jobs over time (bucket maximum)."""
    return _lines(series, DEPTH_SERIES, "Queue depth", "jobs", outages, tz=tz, previous=previous,
                  counted="snapshots")


def throughput_figure(series: pd.DataFrame, outages: pd.DataFrame | None = None, *, tz: str = "UTC",
                      previous: pd.DataFrame | None = None) -> go.Figure:
    """Jobs ended per minute over time."""
    return _lines(series, (("jobs_per_minute", "Jobs/min", "#1f77b4"),), "Throughput", "jobs / min", outages,
                  tz=tz, previous=previous)


def rates_figure(series: pd.DataFrame, outages: pd.DataFrame | None = None, *, tz: str = "UTC",
                 previous: pd.DataFrame | None = None) -> go.Figure:
    """Error and timeout rates (%) over time."""
    columns = (("error_rate_pct", "Error rate", "#d62728"), ("timeout_rate_pct", "Timeout rate", "#ff7f0e"))
    return _lines(series, columns, "Error and timeout rates", "% of jobs ended", outages, "%", tz=tz,
                  previous=previous)


def latency_figure(series: pd.DataFrame, kind: str = "processing",
                   outages: pd.DataFrame | None = None, *, tz: str = "UTC",
                   previous: pd.DataFrame | None = None) -> go.Figure:
    """p50/p95/p99 of processing or wait time (ms) over time, from merged sketches."""
    if kind not in ("processing", "wait"):
        raise ValueError(f"kind must be 'processing' or 'wait', got {kind!r}")
    columns = tuple((f"{p}_{kind}_ms", name, colour) for p, name, colour in PERCENTILE_SERIES)
    title = "Processing time" if kind == "processing" else "Wait time (enqueued → started)"
    return _lines(series, columns, title, "ms", outages, " ms", tz=tz, previous=previous)


def histogram_figure(histogram: pd.DataFrame, empty_note: str = NOTHING_IN_RANGE, *,
                     previous: pd.DataFrame | None = None,
                     previous_label: str = "previous period") -> go.Figure:
    """Execution-time histogram from the merged sketch of the range; `empty_note` is shown when empty;
    `previous` (the earlier window's histogram) is drawn as a dashed outline."""
    figure = new_figure()
    if not histogram.empty:
        centres = (histogram["lower_ms"] + histogram["upper_ms"]) / 2
        figure.add_trace(bar(x=centres, y=histogram["count"],
                                width=histogram["upper_ms"] - histogram["lower_ms"],
                                marker={"color": "#1f77b4"}, name="jobs",
                                customdata=np.stack([histogram["lower_ms"], histogram["upper_ms"]], axis=-1),
                                hovertemplate="%{customdata[0]:,.0f}–%{customdata[1]:,.0f} ms: %{y:,} jobs"
                                              "<extra></extra>"))
        if previous is not None and not previous.empty:
            figure.add_trace(scatter(
                x=(previous["lower_ms"] + previous["upper_ms"]) / 2, y=previous["count"], name=previous_label,
                mode="lines+markers", line={"color": "#7f7f7f", "dash": "dash", "shape": "hvh", "width": 1.4},
                marker={"size": 4}, opacity=0.8,
                hovertemplate=f"%{{y:,}} jobs<extra>{previous_label}</extra>"))
        low_ms, high_ms = float(histogram["lower_ms"].iloc[0]), float(histogram["upper_ms"].iloc[-1])
        if low_ms > 0 and high_ms / max(low_ms, 1e-9) > 20:
            values, labels = log_ms_ticks(low_ms, high_ms)
            figure.update_xaxes(type="log", tickvals=values, ticktext=labels)
        else:
            figure.update_xaxes(ticksuffix=" ms")
    figure = _layout(figure, "Execution time distribution", "jobs")
    figure.update_layout(hovermode="closest", bargap=0.02, showlegend=len(figure.data) > 1,
                         height=CHART_HEIGHT_PX + TIME_LEGEND_PX)  # as tall as the time charts beside it
    figure.update_xaxes(title={"text": "processing time"})
    if histogram.empty:
        return with_note(figure, empty_note)
    return figure


def priority_figure(tiers: pd.DataFrame) -> go.Figure:
    """Waiting jobs per BullMQ priority tier (tiers.label, tiers.waiting), most urgent first."""
    waiting = [int(count) for count in tiers["waiting"]]
    figure = new_figure(bar(x=list(tiers["label"]), y=waiting, text=waiting, textposition="outside",
                              cliponaxis=False, marker={"color": list(TIER_COLOURS[:len(tiers)])},
                              hovertemplate="%{x}: %{y:,} waiting<extra></extra>"))
    figure = _layout(figure, "Waiting jobs by priority", "jobs")
    figure.update_layout(hovermode="closest", showlegend=False)
    figure.update_yaxes(range=[0, max(waiting + [1]) * 1.15])
    figure.update_xaxes(type="category")
    return figure


def _limit_mark(figure: go.Figure, name: str, limit_mb: float, colour: str, top_mb: float, x: float) -> None:
    """A limit as a dashed line when on the scale, else an arrow at the top edge ("hard limit 2048 MB ↑")."""
    if limit_mb <= top_mb:
        figure.add_hline(y=limit_mb, line={"color": colour, "dash": "dash", "width": 1.5},
                         annotation_text=f"{name} limit {limit_mb:.0f} MB", annotation_position="top left")
        return
    figure.add_annotation(text=f"{name} limit {limit_mb:.0f} MB ↑", xref="paper", yref="paper", x=x, y=1.0,
                          xanchor="right" if x > 0.5 else "left", yanchor="top", showarrow=False,
                          font={"color": colour, "size": 11})


def worker_memory_figure(series: pd.DataFrame, soft_limit_mb: float, hard_limit_mb: float, *,
                         tz: str = "UTC") -> go.Figure:
    """RSS per worker over time (bucket peak), scaled to the workers' RSS; the soft and hard memory limits
    as horizontal lines, or as arrows at the top edge when above the scale."""
    figure = new_figure()
    for worker_name, rows in series.groupby("worker_name", sort=True):
        rows = with_gaps(rows.reset_index(drop=True), series.attrs.get("bucket_width_s"))
        figure.add_trace(scatter(x=axis_values(rows["time"], tz), y=rows["rss_mb"],
                                    name=plotly_text(worker_name), mode="lines+markers",
                                    marker={"size": marker_sizes(rows["rss_mb"])},
                                    hovertemplate="%{y:,.0f} MB<extra>%{fullData.name}</extra>"))
    figure = _layout(figure, "Worker memory (RSS)", "MB", tz)
    figure.update_layout(height=CHART_HEIGHT_PX + 40)
    peak_mb = float(series["rss_mb"].max()) if not series.empty and series["rss_mb"].notna().any() else None
    top_mb = peak_mb * RSS_HEADROOM if peak_mb else hard_limit_mb * 1.1
    _limit_mark(figure, "soft", soft_limit_mb, SOFT_COLOUR, top_mb, 0.0)
    _limit_mark(figure, "hard", hard_limit_mb, HARD_COLOUR, top_mb, 1.0)
    figure.update_yaxes(range=[0, top_mb])
    return figure


def host_memory_figure(series: pd.DataFrame, *, tz: str = "UTC") -> go.Figure:
    """Host memory over time: used, cached, workers' RSS and the collector, against the total."""
    figure = new_figure()
    lines = (("used_mb", "used", "#1f77b4", None), ("cached_mb", "cached", "#aec7e8", None),
             ("workers_rss_mb", "workers RSS", "#ff7f0e", None),
             ("collector_rss_mb", "collector", "#2ca02c", None),
             ("total_mb", "total", "#7f7f7f", "dot"))
    for hostname, rows in series.groupby("hostname", sort=True):
        rows = with_gaps(rows.reset_index(drop=True), series.attrs.get("bucket_width_s"))
        prefix = f"{plotly_text(hostname)} " if series["hostname"].nunique() > 1 else ""
        for column, name, colour, dash in lines:
            figure.add_trace(scatter(x=axis_values(rows["time"], tz), y=rows[column],
                                        name=f"{prefix}{name}",
                                        mode="lines+markers", marker={"size": marker_sizes(rows[column])},
                                        line={"color": colour, "dash": dash, "width": 1.6},
                                        hovertemplate="%{y:,.0f} MB<extra>%{fullData.name}</extra>"))
    return _layout(figure, "Host memory", "MB", tz)
