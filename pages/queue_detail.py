"""Queue detail: one queue's figures now (10 s refresh), library extras and its history over a range
(refreshed every tenth of a point: see dashboard.history_cache.refresh_s)."""
from __future__ import annotations

import time

import streamlit as st

from core.capacity import duration_text
from dashboard import (
    charts, compare, components, context, history_cache, job_panels, queue_panels, ranges, tables,
)
from dashboard.libraries import PROCESSING_FIELDS
from dashboard.ranges import Comparison, RangeChoice
from storage import queries

st.title("Queue detail")
engine = context.engine()
with context.storage_errors():
    listing = queries.queue_list(engine)
if listing.empty:
    components.empty_state()
    st.stop()

choices = tables.queue_choices(listing)
label = st.selectbox("Queue", list(choices), key="queue_detail_queue",
                     index=tables.requested_choice(choices, st.query_params.get("queue"),
                                                   st.query_params.get("library")))
library, queue = choices[label]
chosen = listing[(listing["library"] == library) & (listing["queue_name"] == queue)].iloc[0]


@context.live_fragment(context.QUEUE_REFRESH_S)
def queue_now(library: str, queue: str) -> None:
    """The newest snapshot: figures, BullMQ extras, what the library cannot measure."""
    with context.storage_errors():
        row = queries.latest_snapshot(engine, queue, library=library)
    if row is None:
        return
    if not chosen["current"]:
        queue_panels.stale_warning(row)
    queue_panels.current_tiles(row)
    details = queries.bullmq_details(row)
    if details is not None:
        queue_panels.bullmq_panel(details)
    queue_panels.unavailable_note(row)


def queue_history(library: str, queue: str, choice: RangeChoice, comparison: Comparison | None,
                  every_s: float) -> None:
    """Whole-range percentiles and the charts of one queue (with the earlier window when comparing),
    refreshed every `every_s`."""
    since_s, until_s = choice.bounds(time.time())
    tz = context.settings().timezone
    with context.storage_errors():
        series = history_cache.queue_series(engine, queue, since_s, until_s, library=library)
        if series.empty:
            st.info("No snapshots of this queue in this range. Pick a longer range.")
            return
        gaps = queries.outages(engine, since_s, until_s)
        timing = history_cache.range_timing(engine, queue, since_s, until_s, library=library)
        previous = compare.previous_series(engine, queue, since_s, until_s, comparison, library=library)
        earlier_histogram = compare.previous_histogram(engine, queue, since_s, until_s, comparison,
                                                       library=library)
    processing_measured = not PROCESSING_FIELDS <= set(series.attrs["unavailable"])
    components.timing_tiles(timing, processing_measured=processing_measured)
    st.caption(f"{len(series):,} points of {series.attrs['bucket_width_s']:g} s, refreshed every "
               f"{duration_text(every_s)}; depths are the peak per point; percentiles merge the per-snapshot "
               "sketches. Shaded spans: collector outages.")
    if comparison is not None:
        st.caption(f"Dashed, faded lines ({comparison.label}): the same window one "
                   f"{comparison.label.removeprefix('previous ')} earlier, moved forward onto this axis.")
    revision = f"{library}:{queue}:{choice.label}:{choice.first_day}:{choice.last_day}"
    left, right = st.columns(2)
    histogram_note = charts.NOTHING_IN_RANGE if processing_measured else charts.NOT_MEASURED
    timed = {"tz": tz, "previous": previous}
    for container, key, figure in (
            (left, "depth", charts.depth_figure(series, gaps, **timed)),
            (right, "throughput", charts.throughput_figure(series, gaps, **timed)),
            (left, "rates", charts.rates_figure(series, gaps, **timed)),
            (right, "histogram", charts.histogram_figure(
                timing["histogram"], histogram_note, previous=earlier_histogram,
                previous_label=comparison.label if comparison else "")),
            (left, "processing", charts.latency_figure(series, "processing", gaps, **timed)),
            (right, "wait", charts.latency_figure(series, "wait", gaps, **timed))):
        components.live_chart(container, figure, f"queue_detail_{key}", revision,
                              group="" if key == "histogram" else "queue_detail_time")
    queue_panels.not_drawn_note(library, charts.undrawn_fields(series))


@context.live_fragment(context.QUEUE_REFRESH_S)
def queue_jobs(library: str, queue: str, choice: RangeChoice) -> None:
    """Capacity and timeout advice, then the range's failed jobs."""
    with context.storage_errors():
        job_panels.advice_section(engine, library, queue, context.settings().wait_target_s)
        job_panels.failures_section(engine, library, queue, *choice.bounds(time.time()))


queue_now(library, queue)
st.subheader("History")
range_column, compare_column = st.columns([3, 2])
with range_column:
    picked_range = ranges.range_picker("queue_detail_range", default="1 h")
with compare_column:
    comparison = ranges.compare_picker("queue_detail_compare")
range_since_s, range_until_s = picked_range.bounds(time.time())
history_every_s = history_cache.refresh_s(range_until_s - range_since_s, context.QUEUE_REFRESH_S)
context.live_fragment(history_every_s)(queue_history)(library, queue, picked_range, comparison,
                                                       history_every_s)
queue_jobs(library, queue, picked_range)
