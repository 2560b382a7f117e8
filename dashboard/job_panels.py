"""Streamlit parts of Queue detail about jobs: recent failures with their tracebacks, capacity and timeout advice.

Everything read from Redis (job ids, names, messages, tracebacks) is shown as plain text: in table cells, in
st.text or in st.code, never as markdown.
"""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from core.capacity import VERDICT_TEXT, duration_text
from dashboard import history_cache
from dashboard.formatting import fmt_figure, fmt_ms, fmt_utc
from storage import failures
from storage.queries_capacity import FLOW_WINDOW_S, queue_advice

READ_ONLY_NOTE = "Read-only: queuewatch never retries, requeues or deletes jobs."
FAILURES_SHOWN = 100
NOT_MEASURED = "n/a"


def _failure_label(row: dict[str, Any]) -> str:
    return f"{fmt_utc(row['failed_at_s'])} · {row['job_id']} · {row['exception_type']}"


def failures_section(engine: Engine, library: str, queue: str, since_s: float, until_s: float) -> None:
    """Failures of the range by exception type, the newest ones, and one failure's traceback."""
    st.subheader("Failed jobs")
    st.caption(f"{READ_ONLY_NOTE} Failures are stored as the collector samples them (at most "
               "QUEUEWATCH_SAMPLE_JOBS per cycle and QUEUEWATCH_FAILURES_KEPT per queue), so the counts cover "
               "the failures sampled in the range.")
    counts = failures.failure_counts(engine, queue, library, since_s, until_s)
    if counts.empty:
        st.info("No failed job of this queue was stored in this range.", icon=":material/check_circle:")
        return
    recent = failures.recent_failures(engine, queue, library, since_s, until_s, limit=FAILURES_SHOWN)
    st.dataframe(pd.DataFrame({"Exception": counts["exception_type"], "Failures in range": counts["count"],
                               "Last": pd.to_datetime(counts["last_at_s"], unit="s", utc=True)}),
                 hide_index=True, width="content", key=f"failure_counts_{library}_{queue}",
                 column_config={"Last": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss z")})
    st.dataframe(pd.DataFrame({
        "Time": pd.to_datetime(recent["failed_at_s"], unit="s", utc=True), "Exception": recent["exception_type"],
        "Message": recent["message"], "Function / job": recent["job_name"], "Worker": recent["worker"],
        "Run time": [fmt_ms(v) for v in recent["run_ms"]], "Job id": recent["job_id"]}), hide_index=True,
        width="stretch", key=f"failures_{library}_{queue}", placeholder=NOT_MEASURED,
        column_config={"Time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss z", width="small"),
                       "Message": st.column_config.TextColumn(width="large"),
                       "Run time": st.column_config.TextColumn(width="small")})
    rows = recent.to_dict("records")
    labels = {_failure_label(row): int(row["id"]) for row in rows}
    chosen = st.selectbox("Traceback of", list(labels), key=f"failure_pick_{library}_{queue}",
                          help=f"The newest {FAILURES_SHOWN} failures of the range.")
    detail = failures.failure_traceback(engine, labels[chosen]) if chosen else None
    if detail is not None:
        with st.expander("Traceback", expanded=True, icon=":material/bug_report:"):
            st.text(f"{detail['exception_type']}: {detail['message'] or ''}")
            st.code(detail["traceback"] or "(no traceback stored)", language=None, wrap_lines=True)


def _seconds(value: float | None, digits: int = 2) -> str:
    return NOT_MEASURED if value is None else f"{value:,.{digits}f}"


def advice_section(engine: Engine, library: str, queue: str, wait_target_s: float) -> None:
    """Capacity (arrivals, completions, busy and needed workers, drain) and timeout advice tiles."""
    now_s = time.time()
    advice = queue_advice(engine, queue, library=library, wait_target_s=wait_target_s, now_s=now_s,
                          processing=history_cache.stored_processing(engine, queue, library, now_s))
    if advice is None:
        return
    c, t = advice["capacity"], advice["timeout"]
    st.subheader("Capacity and timeout advice")
    tiles = [
        ("Arrivals / s", _seconds(c["arrival_per_s"]),
         "Jobs ended plus backlog growth (waiting + active) per second over the window."),
        ("Completions / s", _seconds(c["completion_per_s"]), "Jobs ended (finished or failed) per second."),
        ("Busy workers", _seconds(c["busy_workers"], 1), "Mean active jobs over the window."),
        ("Workers needed",
         NOT_MEASURED if c["workers_needed"] is None else f"{c['workers_needed']:,}",
         f"Fewest workers keeping the p95 wait under {duration_text(wait_target_s)} (QUEUEWATCH_WAIT_TARGET_S): M/M/c with Erlang C from the "
         "arrival rate and the mean run time (README: Capacity and timeout advice)."),
        ("Backlog", c["drain_text"], "Time to empty waiting + active jobs at the current rates."),
    ]
    for column, (label, text, help_text) in zip(st.columns(len(tiles)), tiles):
        column.metric(label, text, border=True, help=help_text)
    configured = t["configured_s"]
    timeout_tiles = [
        ("Suggested timeout", NOT_MEASURED if t["suggested_s"] is None else f"{fmt_figure(t['suggested_s'])} s",
         "p99.9 of the stored run times × 1.5, rounded up."),
        ("Configured timeout", NOT_MEASURED if configured is None else f"{fmt_figure(configured)} s",
         "RQ's job timeout as the newest sampled jobs had it; BullMQ and Celery expose none (n/a)."),
        ("p99 run time", NOT_MEASURED if t["p99_s"] is None else fmt_ms(t["p99_s"] * 1000),
         "Over every stored run time."),
        ("Longest run", NOT_MEASURED if t["max_s"] is None else fmt_ms(t["max_s"] * 1000),
         "Over every stored run time."),
    ]
    for column, (label, text, help_text) in zip(st.columns(len(tiles)), timeout_tiles):
        column.metric(label, text, border=True, help=help_text)
    window = c["window_s"]
    note = (f"Rates over the last {duration_text(window)} of snapshots (at most {duration_text(FLOW_WINDOW_S)}); "
            if window else "Rates need two snapshots within the last 5 min; ")
    st.caption(note + f"workers sized for a p95 wait under {duration_text(wait_target_s)}; mean run time {fmt_ms(c['mean_run_s'] * 1000) if c['mean_run_s'] else NOT_MEASURED}; "
               f"timeout figures from {t['sample_count']:,} stored run times.")
    if t["verdict"] in ("cuts_off_normal_jobs", "far_above_run_times"):
        st.warning(f"The configured timeout {VERDICT_TEXT[t['verdict']]}.", icon=":material/timer:")
