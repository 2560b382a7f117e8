"""The dashboard's building blocks without a Streamlit session: ranges, charts, tables, library notes."""
from __future__ import annotations

import time
from datetime import date

import pandas as pd
import pytest

from dashboard import charts, libraries, ranges, tables
from storage import queries
from storage.engine import make_engine


def test_ranges():
    assert ranges.range_bounds("6 h", 10_000.0) == (10_000.0 - 6 * 3600, 10_000.0)
    since_s, until_s = ranges.range_bounds("Custom", 2e9, date(2025, 10, 18), date(2025, 10, 19))
    assert (since_s, until_s) == (1_760_745_600.0, 1_760_918_400.0)
    assert ranges.RangeChoice("1 h").bounds(7200.0) == (3600.0, 7200.0)
    with pytest.raises(ValueError):
        ranges.range_bounds("3 weeks", 0.0)


def test_charts_are_built_from_frames(template):
    engine = make_engine(f"sqlite:///{template}")
    now_s = time.time()
    series = queries.queue_series(engine, "thumbnails", now_s - 3600, now_s)
    gaps = queries.outages(engine, now_s - 3600, now_s)
    depth = charts.depth_figure(series, gaps)
    assert [t.name for t in depth.data] == ["Waiting", "Active", "Delayed", "Failed"]
    assert len(depth.layout.shapes) == len(gaps) == 1
    assert len(charts.with_gaps(series, series.attrs["bucket_width_s"])) == len(series) + 1
    assert [t.name for t in charts.latency_figure(series, "wait").data] == ["p50", "p95", "p99"]
    timing = queries.range_timing(engine, "thumbnails", now_s - 3600, now_s)
    histogram = charts.histogram_figure(timing["histogram"])
    assert sum(histogram.data[0].y) > 0
    memory = charts.worker_memory_figure(queries.worker_memory_series(engine, now_s - 3600, now_s), 512, 1024)
    assert sorted(shape.y0 for shape in memory.layout.shapes) == [512, 1024]
    empty = charts.depth_figure(pd.DataFrame(columns=series.columns))
    assert len(empty.data) == 4
    engine.dispose()


def _schema_checked(figure) -> None:
    """The figure's JSON, read back through plotly's validating constructor (unknown or wrong-typed
    properties raise): the figures are built without per-property validation."""
    import json

    import plotly.graph_objects as go

    checked = go.Figure(json.loads(figure.to_json()))
    assert len(checked.data) == len(figure.data)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_figure_passes_plotly_schema(template, theme):
    from dashboard.chart_style import themed

    engine = make_engine(f"sqlite:///{template}")
    now_s = time.time()
    series = queries.queue_series(engine, "thumbnails", now_s - 3600, now_s)
    gaps = queries.outages(engine, now_s - 3600, now_s)
    assert not gaps.empty
    previous = series.copy()
    previous.attrs.update(series.attrs, label="previous hour")
    timing = queries.range_timing(engine, "thumbnails", now_s - 3600, now_s)
    tiers = pd.DataFrame({"label": ["high", "normal"], "waiting": [3, 1]})
    figures = [charts.depth_figure(series, gaps, tz="Europe/Berlin", previous=previous),
               charts.throughput_figure(series, gaps), charts.rates_figure(series, gaps),
               charts.latency_figure(series, "processing", gaps), charts.latency_figure(series, "wait"),
               charts.histogram_figure(timing["histogram"], previous=timing["histogram"]),
               charts.histogram_figure(timing["histogram"].iloc[0:0]),
               charts.depth_figure(pd.DataFrame(columns=series.columns)), charts.priority_figure(tiers),
               charts.worker_memory_figure(queries.worker_memory_series(engine, now_s - 3600, now_s), 512, 1024),
               charts.host_memory_figure(queries.host_memory_series(engine, now_s - 3600, now_s))]
    for figure in figures:
        _schema_checked(themed(figure, theme))
    engine.dispose()


def test_schema_check_catches_a_wrong_property():
    from dashboard.chart_style import new_figure, scatter

    with pytest.raises(ValueError):
        _schema_checked(new_figure(scatter(x=[1], y=[2], mode="lines", linewidth=3)))


def test_overview_table_orders_by_severity():
    latest = pd.DataFrame([
        {"queue_name": "a", "status": "healthy", "current": True, "issues": "[]", "waiting": 1, "active": 0,
         "delayed": 0, "failed": 0, "jobs_per_minute": 1.0, "error_rate_pct": 0.0, "timeout_rate_pct": 0.0,
         "p95_processing_ms": None, "oldest_waiting_ms": 0.0, "sampled_at_s": 100.0},
        {"queue_name": "b", "status": "critical", "current": True, "issues": '["Queue depth above critical"]',
         "waiting": 2000, "active": 0, "delayed": 0, "failed": 0, "jobs_per_minute": 1.0,
         "error_rate_pct": 0.0, "timeout_rate_pct": 0.0, "p95_processing_ms": 10.0, "oldest_waiting_ms": 0.0,
         "sampled_at_s": 100.0},
    ])
    latest["unavailable"] = [None, "delayed,oldestWaitingMs"]
    latest["library"] = ["rq", "celery"]
    table = tables.overview_table(latest, 110.0)
    assert table["Queue"].tolist() == ["b", "a"] and table["Issues"][0] == "Queue depth above critical"
    assert table["Library"].tolist() == ["celery", "rq"]
    assert table["Last seen (s ago)"].tolist() == [10.0, 10.0]
    assert pd.isna(table.loc[0, "Delayed"]) and pd.isna(table.loc[0, "Oldest waiting (s)"])
    assert pd.isna(table.loc[1, "p95 (ms)"])
    assert table.loc[1, "Delayed"] == 0 and table.loc[0, "Waiting"] == 2000
    assert tables.by_library(latest, ["rq"])["queue_name"].tolist() == ["a"]
    assert len(tables.by_library(latest, [])) == 2


def test_queue_detail_link_picks_library_and_queue(seeded_url):
    choices = {"emails · celery": ("celery", "emails"), "emails · rq": ("rq", "emails")}
    assert tables.requested_choice(choices, "emails", "rq") == 1
    assert tables.requested_choice(choices, "emails", None) == 0
    assert tables.requested_choice(choices, "nope", None) == 0
    listing = queries.queue_list(make_engine(seeded_url))
    assert list(tables.queue_choices(listing))[:2] == ["celery · celery", "emails · rq"]


def test_unmeasured_series_are_not_drawn():
    series = pd.DataFrame({"time": pd.to_datetime([0, 10], unit="s", utc=True), "bucket_start_s": [0.0, 10.0],
                           "waiting": [1, 2], "active": [0, 1], "delayed": [0, 0], "failed": [None, None],
                           "jobs_per_minute": [None, None], "error_rate_pct": [None, None],
                           "timeout_rate_pct": [None, None]})
    series.attrs.update(bucket_width_s=10.0, unavailable=("errorRate", "failed", "jobsPerMinute"))
    assert [t.name for t in charts.depth_figure(series).data] == ["Waiting", "Active", "Delayed"]
    assert not charts.throughput_figure(series).data
    assert [t.name for t in charts.rates_figure(series).data] == ["Timeout rate"]
    assert charts.undrawn_fields(series) == ["failed", "jobsPerMinute", "errorRate"]
    assert libraries.field_labels(charts.undrawn_fields(series)) == ["failed", "jobs/min", "error rate"]
    assert "`-E`" in libraries.explain("celery", ["jobsPerMinute"])
    assert libraries.explain("rq", ["failed"]) == "Failed: the RQ backend did not report them."
