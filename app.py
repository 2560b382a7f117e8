"""queuewatch dashboard: the login, then the page list (`streamlit run app.py` or `queuewatch dashboard`)."""
from __future__ import annotations

import streamlit as st

from dashboard import components, context
from dashboard.login import account_sidebar, cookie_exchange, login_page, refused_page

# (script, title, icon, URL path). The URL paths differ from the file names: Streamlit's older routing
# (AppTest, a bare `streamlit run app.py`) would otherwise run a file of pages/ directly, skipping this
# script.
PAGES = (("pages/overview.py", "Overview", ":material/dashboard:", "summary"),
         ("pages/queue_detail.py", "Queue detail", ":material/monitoring:", "queue"),
         ("pages/workers.py", "Workers & memory", ":material/memory:", "memory"),
         ("pages/alerts.py", "Alerts", ":material/notifications_active:", "alert-history"),
         ("pages/jobs.py", "Job lookup", ":material/search:", "job-lookup"),
         ("pages/export.py", "Export", ":material/download:", "csv-export"))


def stand_ins(page, title: str, icon: str) -> list[st.Page]:
    """`page` at every page's URL, so that a link opened without access keeps its path and query."""
    return [st.Page(page, title=title, icon=icon, url_path=url_path, default=index == 0)
            for index, (_, _, _, url_path) in enumerate(PAGES)]


st.set_page_config(page_title="queuewatch", page_icon=":material/monitor_heart:", layout="wide")
components.page_style()
user = context.session_user()
cookie_exchange()
if user is None:
    navigation = st.navigation(stand_ins(login_page, "Log in", ":material/login:"), position="hidden")
elif not user.is_admin:
    navigation = st.navigation(stand_ins(refused_page, "Admin access required", ":material/block:"),
                               position="hidden")
else:
    navigation = st.navigation([st.Page(path, title=title, icon=icon, url_path=url_path, default=index == 0)
                                for index, (path, title, icon, url_path) in enumerate(PAGES)])
if user is not None:
    account_sidebar(user)
navigation.run()
