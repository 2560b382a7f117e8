"""Overview: the DashboardSummary tiles and the health of every queue, refreshed every 5 s."""
from __future__ import annotations

import time

import streamlit as st

from dashboard import baseline_panel, components, context, tables, trends
from dashboard.collectors import collector_reads_table
from storage import queries
from storage.leases import lease_rows

st.title("Queue overview")
engine = context.engine()


@context.live_fragment(context.OVERVIEW_REFRESH_S)
def live_overview() -> None:
    """Summary tiles, then the queue table of the chosen libraries."""
    now_s = time.time()
    with context.storage_errors():
        latest = queries.latest_snapshots(engine)
        if latest.empty:
            components.empty_state()
            return
        summary = queries.dashboard_summary(engine)
        system = queries.system_figures(engine, latest=latest)
        sparklines = trends.depth_sparklines(engine, now_s)
        leases = lease_rows(engine)
    components.freshness_note(float(latest["sampled_at_s"].max()), now_s)
    components.summary_tiles(summary)
    components.system_tiles(system)
    with context.storage_errors():
        baseline_panel.unusual_section(engine, latest, now_s)
    st.subheader("Queues")
    with st.columns([1, 2])[0]:
        libraries = components.library_filter("overview_libraries")
    components.queue_table(tables.overview_table(tables.by_library(latest, libraries), now_s, sparklines))
    st.caption("Rates: jobs/min over the last 60 s, error and timeout rates and p95 over the last 5 min. "
               "n/a: the queue's library cannot measure the figure (**Queue detail** says why), or no job "
               "ended yet to time. The tiles count every library. Stale: the queue's library no longer reports it. "
               "Open **Queue detail** for history.")
    if leases:
        st.subheader("Collectors")
        st.dataframe(collector_reads_table(leases), hide_index=True, key="overview_collectors")
        st.caption("Which collector stored each Redis's newest reading. Collectors on one PostgreSQL share the "
                   "Redis through leases; a collector that stops is replaced within two intervals.")


live_overview()
