"""Queue detail: depth, throughput, rates and timing of one queue over a range, refreshed every 10 s."""
from __future__ import annotations

import time

import streamlit as st

from dashboard import charts, components, context, ranges
from dashboard.ranges import RangeChoice
from storage import queries

st.title("Queue detail")
engine = context.engine()
with context.storage_errors():
    names = queries.queue_names(engine)
if not names:
    components.empty_state()
    st.stop()

requested = st.query_params.get("queue")
queue = st.selectbox("Queue", names, index=names.index(requested) if requested in names else 0,
                     key="queue_detail_queue")
choice = ranges.range_picker("queue_detail_range", default="1 h")
with context.storage_errors():
    latest = queries.latest_snapshots(engine)
components.not_measured_note(latest, queue)


@st.fragment(run_every=context.QUEUE_REFRESH_S)
def queue_history(queue: str, choice: RangeChoice) -> None:
    """Whole-range percentiles and the charts of one queue."""
    since_s, until_s = choice.bounds(time.time())
    with context.storage_errors():
        series = queries.queue_series(engine, queue, since_s, until_s)
        if series.empty:
            st.info(f"No snapshots of **{queue}** in this range. Pick a longer range.")
            return
        gaps = queries.outages(engine, since_s, until_s)
        timing = queries.range_timing(engine, queue, since_s, until_s)
    components.timing_tiles(timing)
    st.caption(f"{len(series):,} points of {series.attrs['bucket_width_s']:g} s; depths are the peak per "
               "point; percentiles merge the per-snapshot sketches. Shaded spans: collector outages.")
    left, right = st.columns(2)
    left.plotly_chart(charts.depth_figure(series, gaps))
    right.plotly_chart(charts.throughput_figure(series, gaps))
    left.plotly_chart(charts.rates_figure(series, gaps))
    right.plotly_chart(charts.histogram_figure(timing["histogram"]))
    left.plotly_chart(charts.latency_figure(series, "processing", gaps))
    right.plotly_chart(charts.latency_figure(series, "wait", gaps))


queue_history(queue, choice)
