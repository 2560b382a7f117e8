"""Alerts: open alerts grouped by queue (acknowledge, snooze, silence), system alerts, pending breaches,
silences, then the history and its events (refreshed every 3 s)."""
from __future__ import annotations

import time

import streamlit as st

from core.system_alerts import SYSTEM_TYPES
from dashboard import alert_panels, components, context, notifications, ranges, tables
from dashboard.ranges import RangeChoice
from storage import queries

ACKNOWLEDGED_FILTERS = {"Any": None, "Not acknowledged": False, "Acknowledged": True}

st.title("Alerts")
engine = context.engine()
with context.storage_errors():
    names = queries.queue_names(engine)
if not names:
    components.empty_state()
    st.stop()

severity_column, queue_column, acknowledged_column, for_column = st.columns(4)
severity = severity_column.selectbox("Severity", ["All", "critical", "warning"], key="alerts_severity")
queue = queue_column.selectbox("Queue", ["All", *names], key="alerts_queue")
acknowledged = acknowledged_column.selectbox("Acknowledged", list(ACKNOWLEDGED_FILTERS),
                                             key="alerts_acknowledged")
with for_column:
    ack_for_s = alert_panels.acknowledge_for()
filters = {"severity": None if severity == "All" else severity,
           "queue_name": None if queue == "All" else queue,
           "acknowledged": ACKNOWLEDGED_FILTERS[acknowledged]}


@context.live_fragment(context.ALERTS_REFRESH_S)
def open_alerts(filters: dict, ack_for_s: float | None) -> None:
    """System alerts, then open alerts matching the filters grouped by queue, then pending breaches."""
    with context.storage_errors():
        system = queries.list_alerts(engine, open_only=True, acknowledged=None, types=sorted(SYSTEM_TYPES),
                                     details=True)
        alert_panels.system_alerts(system, engine, context.settings().interval_s)
        alerts = queries.list_alerts(engine, open_only=True, details=True, **filters)
        pending = queries.pending_breaches(engine)
    st.subheader(f"Open alerts ({len(alerts)})")
    if not alerts:
        st.success("No open alerts match these filters.", icon=":material/check_circle:")
    alert_panels.grouped_alerts(alerts, engine, ack_for_s)
    st.caption("Acknowledgements and silences record your account.")
    alert_panels.pending_table(pending, context.settings().alert_timings)


open_alerts(filters, ack_for_s)

with context.storage_errors():
    alert_panels.silence_form(engine)
    alert_panels.silences_list(engine)

st.subheader("History")
choice = ranges.range_picker("alerts_range", default="24 h")


@context.live_fragment(context.ALERTS_REFRESH_S)
def alert_history(filters: dict, choice: RangeChoice) -> None:
    """Alerts open at any time in the range (resolved ones too) and their events."""
    since_s, until_s = choice.bounds(time.time())
    with context.storage_errors():
        history = queries.alert_history(engine, since_s=since_s, until_s=until_s, **filters)
        events = queries.alert_events_frame(engine, since_s=since_s, until_s=until_s)
    if history.empty:
        st.info("No alerts in this range.")
    else:
        components.alert_history_table(tables.alert_history_table(history), context.settings().timezone)
    with st.expander(f"Alert events ({len(events)})"):
        components.alert_events_table(tables.alert_events_table(events), context.settings().timezone)


alert_history(filters, choice)

notifications.delivery_log_section(engine)
