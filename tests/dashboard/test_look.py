"""How the charts and tables read: markers for sparse points, hover counts, time zones, the previous-period
overlay, memory limits off scale, log ticks with units, depth sparklines, the range in the URL."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from config.settings import SettingsError, load_settings
from core.derive import QueueWindow, snapshot_row
from core.health import ThresholdSet
from core.model import Cursor, QueueReading
from dashboard import chart_style, charts, compare, ranges, tables, trends
from dashboard.ranges import Comparison, RangeChoice
from storage import queries
from storage.engine import make_engine
from storage.queries_series import SERIES_COLUMNS
from storage.writer import CycleRecord, write_cycle
from tests.seed import seed_database, write_seed_file

WEEK_S = 7 * 86400.0


def _store(engine, queue: str, at_s: float, waiting: int) -> None:
    """One cycle holding one RQ queue's snapshot, through the real write path."""
    reading = QueueReading(queue, "rq", waiting, 1, 0, 0, 0, 0, None, Cursor(1.0, 2.0))
    row, _, _ = snapshot_row(reading, QueueWindow(), now_s=at_s, interval_s=10, memory_usage_mb=0,
                             thresholds=ThresholdSet())
    write_cycle(engine, CycleRecord(at_s - 0.1, at_s, 3, [row]), lambda open_rows: [])


def test_two_points_in_seven_days_are_drawn_as_markers(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'sparse.db'}")
    now_s = time.time()
    _store(engine, "sparse", now_s - 5 * 86400, 7)
    _store(engine, "sparse", now_s - 2 * 86400, 9)
    series = queries.queue_series(engine, "sparse", now_s - WEEK_S, now_s)
    engine.dispose()
    assert len(series) == 2
    waiting = charts.depth_figure(series).data[0]
    assert waiting.mode == "lines+markers" and waiting.marker.size == chart_style.MARKER_SIZE_PX
    assert [v for v in waiting.y if v == v] == [7, 9]


def test_long_traces_mark_only_isolated_points():
    values = pd.Series([1.0] * 60 + [np.nan, 5.0, np.nan] + [2.0] * 10)
    sizes = chart_style.marker_sizes(values)
    assert isinstance(sizes, np.ndarray) and len(sizes) == len(values)
    assert [i for i, size in enumerate(sizes) if size] == [61]
    assert chart_style.marker_sizes(pd.Series([1.0, np.nan, 2.0])) == chart_style.MARKER_SIZE_PX


def test_hover_counts_jobs_and_axes_name_the_zone(template):
    engine = make_engine(f"sqlite:///{template}")
    now_s = time.time()
    series = queries.queue_series(engine, "thumbnails", now_s - 3600, now_s)
    engine.dispose()
    figure = charts.throughput_figure(series, tz="Europe/Berlin")
    trace = figure.data[0]
    ended = (series["finished_delta"] + series["failed_delta"]).to_numpy(dtype=float)
    drawn = np.array([row[0] for row in trace.customdata], dtype=float)
    assert np.array_equal(drawn[~np.isnan(drawn)], ended) and ended.sum() > 0
    assert "jobs ended" in trace.hovertemplate
    assert figure.layout.xaxis.title.text == "Time (Europe/Berlin)"
    first = pd.Timestamp(trace.x[0])
    expected = series["time"].iloc[0].tz_convert("Europe/Berlin").tz_localize(None)
    assert first == expected and first != series["time"].iloc[0].tz_localize(None)
    assert "snapshots" in charts.depth_figure(series).data[0].hovertemplate
    assert charts.depth_figure(series).layout.xaxis.title.text == "Time (UTC)"


def test_previous_week_is_read_shifted_and_drawn_dashed(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'weeks.db'}")
    now_s = time.time()
    earlier = seed_database(engine, now_s - WEEK_S, hours=0.5, queues=("thumbnails",))
    seed_database(engine, now_s, hours=0.5, queues=("thumbnails",))
    since_s, until_s = now_s - 1800, now_s
    week = Comparison(WEEK_S, "previous week")
    previous = compare.previous_series(engine, "thumbnails", since_s, until_s, week, library="rq")
    current = queries.queue_series(engine, "thumbnails", since_s, until_s, library="rq")
    assert compare.previous_series(engine, "thumbnails", since_s, until_s, None) is None
    engine.dispose()
    assert previous.attrs["label"] == "previous week" and not previous.empty
    assert previous["bucket_start_s"].min() >= since_s - 60 and previous["bucket_start_s"].max() <= until_s
    assert int(previous["waiting"].max()) == max(earlier.waiting["thumbnails"])
    figure = charts.depth_figure(current, previous=previous)
    names = [trace.name for trace in figure.data]
    assert names[:4] == ["Waiting", "Active", "Delayed", "Failed"]
    assert names[4:] == [f"{name}, previous week" for name in names[:4]] + ["previous week"]
    overlay = figure.data[4]
    assert overlay.line.dash == "dash" and overlay.opacity < 1 and overlay.showlegend is False
    legend = figure.data[8]
    assert legend.legendgroup == overlay.legendgroup == "previous" and legend.showlegend is not False
    assert min(overlay.x) >= min(figure.data[0].x) - pd.Timedelta(minutes=1)


def test_memory_chart_scales_to_rss_and_marks_limits_above_it():
    times = pd.to_datetime([0, 60, 120], unit="s", utc=True)
    series = pd.DataFrame({"worker_name": ["w1"] * 3, "time": times, "bucket_start_s": [0.0, 60.0, 120.0],
                           "rss_mb": [200.0, 260.0, 300.0]})
    figure = charts.worker_memory_figure(series, 512, 2048)
    assert figure.layout.yaxis.range == (0, 300 * charts.RSS_HEADROOM)
    assert not figure.layout.shapes
    texts = [annotation.text for annotation in figure.layout.annotations]
    assert texts == ["soft limit 512 MB ↑", "hard limit 2048 MB ↑"]
    figure = charts.worker_memory_figure(series.assign(rss_mb=[200.0, 900.0, 1700.0]), 512, 2048)
    assert [shape.y0 for shape in figure.layout.shapes] == [512]
    assert [a.text for a in figure.layout.annotations if "↑" in a.text] == ["hard limit 2048 MB ↑"]


def test_histogram_log_ticks_carry_units():
    values, labels = chart_style.log_ms_ticks(0.8, 4000.0)
    assert values == [1, 10, 100, 1000] and labels == ["1 ms", "10 ms", "100 ms", "1 s"]
    values, labels = chart_style.log_ms_ticks(150.0, 2500.0)
    assert labels == ["100 ms", "200 ms", "500 ms", "1 s", "2 s"]
    histogram = pd.DataFrame({"lower_ms": np.geomspace(5, 2000, 11)[:-1],
                              "upper_ms": np.geomspace(5, 2000, 11)[1:], "count": np.arange(10)})
    axis = charts.histogram_figure(histogram).layout.xaxis
    assert axis.type == "log" and "1 s" in axis.ticktext and all(" " in text for text in axis.ticktext)


def test_depth_sparklines_are_the_minutes_peaks(tmp_path):
    path = tmp_path / "trend.db"
    now_s = time.time()
    seeded = write_seed_file(path, now_s, hours=1.0)
    engine = make_engine(f"sqlite:///{path}")
    lines = trends.depth_sparklines(engine, now_s)
    latest = queries.latest_snapshots(engine)
    engine.dispose()
    at_s, waiting = np.array(seeded.sampled_at_s["reports"]), np.array(seeded.waiting["reports"])
    minutes = (at_s // 60).astype(int)
    inside = at_s >= (now_s // 60 - 60) * 60
    expected = [float(waiting[(minutes == m) & inside].max()) for m in sorted(set(minutes[inside]))]
    assert lines[("rq", "reports")] == expected and max(expected) == 1500
    table = tables.overview_table(latest, now_s, lines)
    assert list(table.columns[:5]) == ["Status", "Queue", "Library", "Issues", "Depth trend"]
    row = table[table["Queue"] == "reports"].iloc[0]
    assert row["Depth trend"] == expected


def test_range_and_comparison_round_trip_through_the_url():
    assert ranges.range_query(RangeChoice("7 d")) == {"range": "7d"}
    assert ranges.requested_range("7d", "1 h") == "7 d"
    custom = RangeChoice("Custom", pd.Timestamp("2025-10-18").date(), pd.Timestamp("2025-10-19").date())
    assert ranges.range_query(custom) == {"range": "custom", "from": "2025-10-18", "to": "2025-10-19"}
    assert ranges.requested_day("2025-10-18") == custom.first_day and ranges.requested_day("nope") is None
    assert ranges.comparison_of("week") == Comparison(WEEK_S, "previous week")
    assert ranges.comparison_of("none") is None and ranges.comparison_of("year") is None


def test_timezone_setting_and_themes():
    assert load_settings({"QUEUEWATCH_TIMEZONE": "America/New_York"}).timezone == "America/New_York"
    assert load_settings({}).timezone == "UTC"
    with pytest.raises(SettingsError, match="QUEUEWATCH_TIMEZONE"):
        load_settings({"QUEUEWATCH_TIMEZONE": "Mars/Olympus"})
    empty = pd.DataFrame(columns=SERIES_COLUMNS)
    dark = chart_style.themed(charts.depth_figure(empty), "dark")
    light = chart_style.themed(charts.depth_figure(empty), None)
    assert dark.layout.paper_bgcolor == chart_style.BACKGROUNDS["dark"] != light.layout.paper_bgcolor
    assert dark.layout.template.layout.paper_bgcolor != light.layout.template.layout.paper_bgcolor
