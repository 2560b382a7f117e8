"""The overview's "Unusual for this hour" table: queues whose figures differ from their usual level, worst first."""
from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from core.baseline import K, Unusual
from dashboard.formatting import fmt_figure, fmt_ms
from storage.queries_baseline import History, baseline_history, unusual_queues

HISTORY_TTL_S = 300
"""The hourly history changes once an hour; it is read again at most this often."""


@st.cache_data(ttl=HISTORY_TTL_S, show_spinner=False)
def _history(_engine: Engine, db_url: str, hour: int) -> History:
    return baseline_history(_engine, time.time())


def _shown(figure: str, value: float) -> str:
    if figure.endswith("_ms"):
        return fmt_ms(value)
    if figure.endswith("_pct"):
        return f"{value:.1f}%"
    return fmt_figure(value)


def _row(library: str, queue: str, unusual: Unusual) -> dict:
    return {"Queue": queue, "Library": library, "Figure": unusual.label,
            "Now": _shown(unusual.figure, unusual.value), "Usual": _shown(unusual.figure, unusual.usual.median),
            "Spread": _shown(unusual.figure, unusual.usual.spread),
            "How far": "flat history" if math.isinf(unusual.score) else f"{unusual.score:.1f} × spread",
            "Based on": f"{unusual.usual.points} {'weeks' if unusual.usual.basis == 'weeks' else 'days'}"}


def unusual_section(engine: Engine, latest: pd.DataFrame, now_s: float) -> None:
    """Flagged queues worst first, or a line saying none is unusual (or there is too little history)."""
    history = _history(engine, str(engine.url), int(now_s // 3600))
    flagged = unusual_queues(latest, history, now_s)
    st.subheader("Unusual for this hour of the week")
    if not flagged:
        st.caption("No queue's depth, p95 wait, error rate or p95 processing time is far from its usual level "
                   "at this hour (or the history is shorter than 3 days).")
        return
    rows = [_row(library, queue, unusual) for library, queue, found in flagged for unusual in found]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="overview_unusual")
    st.caption(f"Usual: the median of the same hour of the week over the past 8 weeks (of previous days while "
               f"fewer than 4 weeks are stored); spread: 1.4826 × the median absolute deviation; flagged beyond "
               f"{K:g} × spread and a minimum difference. Worst first. README: Is this normal?")
