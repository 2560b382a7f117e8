"""The Alerts page's read-only delivery log section: what each notification channel sent, or failed to."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dashboard import context
from storage.notify_log import delivery_log

SHOWN_ROWS = 50
STATUS_MARKS = {"delivered": "✅ delivered", "retrying": "⏳ retrying", "failed": "❌ failed"}


def delivery_log_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Delivery log rows as displayed, newest first; a time that did not happen is blank."""
    columns = ["Created", "Channel", "Event", "Alert", "Status", "Attempts", "Last error", "Delivered",
               "Next retry"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({
        "Created": rows["created_at"], "Channel": rows["channel"], "Event": rows["event"],
        "Alert": rows["alert_id"], "Status": [STATUS_MARKS.get(s, s) for s in rows["status"]],
        "Attempts": rows["attempts"].astype("Int64"), "Last error": rows["last_error"].fillna(""),
        "Delivered": rows["delivered_at"], "Next retry": rows["next_attempt_at"],
    })


def delivery_log_section(engine: Engine) -> None:
    """A heading and the newest notification deliveries, refreshed with the page's other live parts."""
    st.subheader("Notifications")
    _delivery_log(engine)


@context.live_fragment(context.ALERTS_REFRESH_S)
def _delivery_log(engine: Engine) -> None:
    with context.storage_errors():
        rows = delivery_log(engine, limit=SHOWN_ROWS)
    if rows.empty:
        st.caption("No notifications sent yet. Channels are set in the config file's `[[notify.channels]]` "
                   "tables or by QUEUEWATCH_WEBHOOK_URL.")
        return
    datetime = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")
    st.dataframe(delivery_log_table(rows), hide_index=True, width="stretch", key="notification_log",
                 column_config={"Created": datetime, "Delivered": datetime, "Next retry": datetime})
    st.caption(f"The newest {SHOWN_ROWS} deliveries of every channel; errors never show a channel's secrets.")
