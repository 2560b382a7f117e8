"""queuewatch dashboard: the page list, nothing else (`streamlit run app.py` or `queuewatch dashboard`)."""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="queuewatch", page_icon=":material/monitor_heart:", layout="wide")
st.navigation([
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/queue_detail.py", title="Queue detail", icon=":material/monitoring:"),
    st.Page("pages/workers.py", title="Workers & memory", icon=":material/memory:"),
    st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications_active:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]).run()
