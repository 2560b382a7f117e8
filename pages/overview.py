"""Overview: the DashboardSummary tiles and the health of every queue, refreshed every 5 s."""
from __future__ import annotations

import time

import streamlit as st

from dashboard import components, context, tables
from storage import queries

st.title("Queue overview")
engine = context.engine()


@st.fragment(run_every=context.OVERVIEW_REFRESH_S)
def live_overview() -> None:
    """Summary tiles and queue table."""
    now_s = time.time()
    with context.storage_errors():
        latest = queries.latest_snapshots(engine)
        if latest.empty:
            components.empty_state()
            return
        summary = queries.dashboard_summary(engine)
    components.freshness_note(float(latest["sampled_at_s"].max()), now_s)
    components.summary_tiles(summary)
    st.subheader("Queues")
    components.queue_table(tables.overview_table(latest, now_s))
    st.caption("Rates: jobs/min over the last 60 s, error and timeout rates and p95 over the last 5 min. "
               "Open **Queue detail** for history.")


live_overview()
