"""Export: CSV downloads of snapshots (QueueMetrics column names), worker memory and alerts."""
from __future__ import annotations

import time

import streamlit as st

from dashboard import components, context, ranges
from dashboard.formatting import fmt_utc
from dashboard.libraries import NOT_AVAILABLE
from storage import queries

st.title("Export")
engine = context.engine()
with context.storage_errors():
    names = queries.queue_names(engine)
if not names:
    components.empty_state()
    st.stop()

queue_column, library_column = st.columns([3, 1])
selected = queue_column.multiselect("Queues", names, default=names, key="export_queues")
with library_column:
    libraries = components.library_filter("export_libraries")
choice = ranges.range_picker("export_range", default="24 h")
since_s, until_s = choice.bounds(time.time())
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(until_s))
with context.storage_errors():
    counts = queries.export_counts(engine, selected, since_s, until_s, libraries=libraries)
    preview = queries.snapshots_export(engine, selected, since_s, until_s, limit=10, libraries=libraries)
st.caption(f"From {fmt_utc(since_s)} to {fmt_utc(until_s)}. Times in the files are ISO 8601 UTC; "
           "each file is built when you click its button.")


def csv_of(kind: str, queues: list[str] | None):
    """A callable building the CSV on click."""
    return lambda: queries.export_csv_text(engine, kind=kind, queues=queues, since_s=since_s, until_s=until_s,
                                           libraries=libraries)


snapshots, workers, alerts = st.columns(3)
snapshots.metric("Queue snapshots", f"{counts['snapshots']:,}", border=True)
snapshots.download_button("Snapshots CSV", csv_of("snapshots", selected),
                          file_name=f"queuewatch-snapshots-{stamp}.csv", mime="text/csv",
                          key="export_snapshots", on_click="ignore", disabled=not selected,
                          help="Columns: the spec's QueueMetrics fields, then library, status, wait "
                               "percentiles, the interval's counts and the figures not measured.")
workers.metric("Worker rows", f"{counts['workers']:,}", border=True)
workers.download_button("Worker memory CSV", csv_of("workers", None),
                        file_name=f"queuewatch-workers-{stamp}.csv", mime="text/csv",
                        key="export_workers", on_click="ignore",
                        help="One row per worker per cycle, memory under the spec's MemoryStats names "
                             "(empty when not measured), then library and memory source.")
alerts.metric("Alerts", f"{counts['alerts']:,}", border=True)
alerts.download_button("Alerts CSV", csv_of("alerts", selected), file_name=f"queuewatch-alerts-{stamp}.csv",
                       mime="text/csv", key="export_alerts", on_click="ignore", disabled=not selected,
                       help="Alerts open during the range, under the spec's Alert names, with their "
                            "resolution times.")

st.subheader("Snapshots preview")
if preview.empty:
    st.info("No snapshots of these queues in this range.")
else:
    st.dataframe(preview, hide_index=True, width="stretch", placeholder=NOT_AVAILABLE)
    st.caption("n/a: not measured by the queue's library (the `unavailable` column names those figures; "
               "their cells are empty in the CSV), or no job ended to time.")
