"""queuewatch dashboard: the login, then the page list (`streamlit run app.py` or `queuewatch dashboard`)."""
from __future__ import annotations

import streamlit as st

from dashboard.context import session_user
from dashboard.login import account_sidebar, login_page, refused_page

st.set_page_config(page_title="queuewatch", page_icon=":material/monitor_heart:", layout="wide")
user = session_user()
if user is None:
    pages = [st.Page(login_page, title="Log in", icon=":material/login:")]
elif not user.is_admin:
    pages = [st.Page(refused_page, title="Admin access required", icon=":material/block:")]
else:
    pages = [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("pages/queue_detail.py", title="Queue detail", icon=":material/monitoring:"),
        st.Page("pages/workers.py", title="Workers & memory", icon=":material/memory:"),
        st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications_active:"),
        st.Page("pages/export.py", title="Export", icon=":material/download:"),
    ]
if user is not None:
    account_sidebar(user)
st.navigation(pages).run()
