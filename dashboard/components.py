"""Streamlit building blocks the pages are made of: empty state, metric tiles, tables, alert cards."""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pandas.io.formats.style import Styler
from sqlalchemy import Engine

from dashboard import context
from dashboard.chart_style import themed
from dashboard.formatting import (
    EMPTY_STATE, fmt_age, fmt_figure, fmt_iso, fmt_ms, fmt_utc, markdown_text, severity_markdown,
    status_style,
)
from dashboard.live_chart import live_chart as draw_in_place
from dashboard.libraries import ALL_LIBRARIES, LIBRARIES, NOT_AVAILABLE
from storage.writer import acknowledge_alerts

STALE_AFTER_S = 120.0
UNKNOWN = "–"


def coloured(table: pd.DataFrame, column: str) -> pd.DataFrame | Styler:
    """The table with its status column coloured by status."""
    return table.style.map(status_style, subset=[column]) if not table.empty else table


def status_table(table: pd.DataFrame, status_column: str, column_config: dict[str, Any], *,
                 placeholder: str = NOT_AVAILABLE, row_height_px: int | None = None) -> None:
    """A full-width table without index, its status column coloured, missing cells shown as `placeholder`;
    rows taller than 4 rem (`row_height_px`) let long text wrap instead of being cut."""
    height: int | str = "auto"
    if row_height_px is not None:  # every row shown, up to a screenful
        height = min(MAX_TABLE_PX, HEADER_PX + max(len(table), 1) * row_height_px + 2)
    st.dataframe(coloured(table, status_column), hide_index=True, width="stretch", placeholder=placeholder,
                 column_config=column_config, row_height=row_height_px, height=height)


# Column widths (px) that fit the main column at 1440 px; rows of WRAP_ROW_PX wrap long text on 3 lines.
WRAP_ROW_PX = 66
ISSUES_ROW_PX = 92  # five lines: a critical queue's issues are read whole, without opening the cell
HEADER_PX, MAX_TABLE_PX = 36, 760


def _datetime_column(tz: str = "UTC", label: str | None = None, width: int | None = None) -> Any:
    """A time shown in `tz`, the zone named in the header ("Started (UTC)")."""
    return st.column_config.DatetimeColumn(label=f"{label} ({tz})" if label else None,
                                           format="MM-DD HH:mm:ss", timezone=tz, width=width)


def _number_column(fmt: str, label: str | None = None, width: int | None = None,
                   help: str | None = None) -> Any:
    return st.column_config.NumberColumn(label=label, format=fmt, width=width, help=help)


def _text_column(width: int, label: str | None = None, help: str | None = None) -> Any:
    return st.column_config.TextColumn(label=label, width=width, help=help)


def library_filter(key: str) -> list[str]:
    """A multiselect of libraries (none picked: all of them), under a stable key."""
    return st.multiselect("Library", LIBRARIES, key=key, placeholder=ALL_LIBRARIES,
                          help="Show only these libraries' rows; leave empty for all.")


def empty_state(detail: str | None = None) -> None:
    """The message shown while the database holds no snapshots."""
    st.info(EMPTY_STATE + (f"\n\n{detail}" if detail else ""), icon=":material/info:")


def freshness_note(newest_s: float | None, now_s: float) -> None:
    """A caption with the newest snapshot's age, a warning when the collector seems stopped."""
    if newest_s is None:
        return
    age_s = now_s - newest_s
    if age_s > STALE_AFTER_S:
        st.warning(f"The newest snapshot is from {fmt_utc(newest_s)} ({fmt_age(age_s)}). "
                   "Is `queuewatch collect` running?", icon=":material/pause_circle:")
    else:
        st.caption(f"Newest snapshot {fmt_utc(newest_s)} ({fmt_age(age_s)})")


def summary_tiles(summary: dict[str, Any]) -> None:
    """DashboardSummary as two rows of metric tiles."""
    first = st.columns(5)
    first[0].metric("Queues", summary["totalQueues"], border=True)
    first[1].metric("Healthy", summary["healthyQueues"], border=True)
    first[2].metric("Warning", summary["warningQueues"], border=True)
    first[3].metric("Critical", summary["criticalQueues"], border=True)
    first[4].metric("Open alerts", summary["activeAlerts"], border=True,
                    help="Unresolved alerts that nobody has acknowledged yet.")
    second = st.columns(5)
    second[0].metric("Waiting", f"{summary['totalWaiting']:,}", border=True)
    second[1].metric("Active", f"{summary['totalActive']:,}", border=True)
    second[2].metric("Failed", f"{summary['totalFailed']:,}", border=True)
    second[3].metric("Avg jobs/min", f"{summary['avgJobsPerMinute']:,.1f}", border=True,
                     help="Mean of the queues' jobs per minute over the last 60 s.")
    second[4].metric("Avg error rate", f"{summary['avgErrorRate']:.2f}%", border=True,
                     help="Mean of the queues' error rates over the last 5 min.")


def system_tiles(figures: dict[str, Any]) -> None:
    """The whole system's own figures: all jobs per minute and the error rate of every job that ended."""
    per_minute, error_rate = figures["jobsPerMinute"], figures["errorRate"]
    first, second, _ = st.columns([1, 1, 3])
    first.metric("All jobs/min", "n/a" if per_minute is None else f"{per_minute:,.1f}", border=True,
                 help="Jobs that ended per minute over the last 60 s, summed over every current queue.")
    second.metric("Error rate, all jobs", "n/a" if error_rate is None else f"{error_rate:.2f}%", border=True,
                  help=f"Failed jobs as % of the {figures['endedJobs']:,} jobs that ended on any queue in the "
                       "last 5 min (the tiles above average the queues' own rates instead).")


def queue_table(table: pd.DataFrame) -> None:
    """The overview's queue table, the Issues text that explains a status wrapped beside it and a depth
    sparkline; a missing figure (not measured by the queue's backend) reads "n/a"."""
    status_table(table, "Status", {
        "Status": _text_column(66),
        "Queue": _text_column(90),
        "Library": _text_column(62, "Lib"),
        "Issues": _text_column(158, help="Why the queue has its status."),
        "Depth trend": st.column_config.LineChartColumn(
            "Waiting, 1 h", width=78, y_min=0, help="Peak waiting jobs per minute over the last hour."),
        "Waiting": _number_column("%d", width=58),
        "Active": _number_column("%d", width=50),
        "Delayed": _number_column("%d", width=58),
        "Failed": _number_column("%d", width=50),
        "Jobs/min": _number_column("%.1f", width=64),
        "Error %": _number_column("%.2f", width=56),
        "Timeout %": _number_column("%.2f", "Tmout %", width=62, help="Timeout rate, % of jobs ended."),
        "p95 (ms)": _number_column("%.0f", width=62, help="p95 processing time over the last 5 min."),
        "Oldest waiting (s)": _number_column("%.1f", "Oldest wait s", width=86,
                                             help="Age of the oldest waiting job, in seconds."),
        "Last seen (s ago)": _number_column("%.0f", "Seen s ago", width=70,
                                            help="Seconds since the newest snapshot of the queue."),
    }, row_height_px=ISSUES_ROW_PX)


def timing_tiles(timing: dict[str, Any], *, processing_measured: bool = True) -> None:
    """Whole-range processing and wait percentiles (merged sketches) as metric tiles.

    With processing_measured False (the backend measured no processing time in the range) the processing
    tiles say "n/a".
    """
    processing, wait = timing["processing"], timing["wait"]

    def shown(value_ms: float | None) -> str:
        return fmt_ms(value_ms) if processing_measured else NOT_AVAILABLE

    first = st.columns(4)
    first[0].metric("Jobs timed", f"{processing['sampleCount']:,}" if processing_measured else NOT_AVAILABLE,
                    border=True, help="Jobs that ended in the range and whose timings the collector sampled.")
    first[1].metric("Processing p50", shown(processing["p50"]), border=True)
    first[2].metric("Processing p95", shown(processing["p95"]), border=True)
    first[3].metric("Processing p99", shown(processing["p99"]), border=True)
    second = st.columns(4)
    second[0].metric("Processing avg", shown(processing["avg"]), border=True)
    second[1].metric("Wait p50", fmt_ms(wait["p50"]), border=True)
    second[2].metric("Wait p95", fmt_ms(wait["p95"]), border=True)
    second[3].metric("Wait p99", fmt_ms(wait["p99"]), border=True)


def worker_tiles(summary: dict[str, Any]) -> None:
    """WorkerMemorySummary figures as metric tiles."""
    tiles = st.columns(4)
    tiles[0].metric("Workers reporting", summary["totalWorkers"], border=True)
    tiles[1].metric("Jobs processed", f"{summary['totalJobsProcessed']:,}", border=True)
    tiles[2].metric("Average RSS", f"{summary['averageMemoryUsage']:,.0f} MB", border=True,
                    help="Mean RSS of the workers whose memory is measured (those on the collector's host).")
    tiles[3].metric("Need recycling", summary["workersNeedingRecycle"], border=True)


def worker_table(table: pd.DataFrame, tz: str = "UTC") -> None:
    """The workers table, the recycle verdict and RSS beside the state; memory that neither an agent nor
    psutil measured (and any other gap) reads "n/a"."""
    status_table(table, "State", {
        "Worker": _text_column(110),
        "Library": _text_column(64, "Lib"),
        "Queues": _text_column(80),
        "Host": _text_column(70),
        "PID": _number_column("%d", width=56),
        "State": _text_column(56),
        "RSS (MB)": _number_column("%.0f", width=72),
        "Should recycle": st.column_config.CheckboxColumn("Recycle?", width=66),
        "Recycle reason": _text_column(142),
        "Jobs processed": _number_column("%d", "Jobs", width=56, help="Jobs processed."),
        "Memory source": _text_column(64, "Mem. src"),
        "Started": _datetime_column(tz, "Started", width=112),
        "Last heartbeat": _datetime_column(tz, "Heartbeat", width=118),
    }, row_height_px=WRAP_ROW_PX)


def acknowledge(engine: Engine, alert_ids: list[str], for_s: float | None) -> None:
    """Acknowledge the alerts (for `for_s` seconds, or until resolved) as the logged-in admin."""
    actor = context.acting_admin("Acknowledgement")  # the role and disabled flag as they are now
    if actor is None:
        return
    now_s = time.time()
    rows = acknowledge_alerts(engine, alert_ids, actor.email, now_s, until_s=now_s + for_s if for_s else None)
    if any(row is None for row in rows.values()):
        st.toast("An alert no longer exists.", icon=":material/warning:")
    elif len(rows) == 1:
        row = next(iter(rows.values()))
        st.toast(f"Acknowledged at {fmt_utc(row['acknowledged_at_s'])}", icon=":material/check_circle:")
    else:
        st.toast(f"Acknowledged {len(rows)} alerts", icon=":material/check_circle:")


SILENCE_PREFILL_KEY = "alerts_silence_prefill"


def _prefill_silence(alert: dict[str, Any]) -> None:
    """Fill the silence form with this alert's queue, library and type."""
    st.session_state["silence_queue"] = alert["queueName"]
    st.session_state["silence_library"] = alert.get("library") or "Any"
    st.session_state["silence_type"] = alert["type"]
    st.session_state["silence_severity"] = "Any"
    st.session_state[SILENCE_PREFILL_KEY] = alert["id"]


def alert_card(alert: dict[str, Any], engine: Engine, for_s: float | None = None) -> None:
    """One open alert: what, since when, silence and snooze, an Acknowledge button (for `for_s` seconds, or
    until resolved) or who acknowledged it, and a Silence button that fills the silence form.

    Queue names, messages, ids and emails are data: they are shown with st.text (never markdown, which
    would make emphasis, images and links, bare URLs and emails included, out of them).
    """
    with st.container(border=True):
        text, action = st.columns([4, 1], vertical_alignment="center")
        text.markdown(severity_markdown(alert["severity"]))
        text.text(f"{alert['queueName']} · {alert['type']}" + (f" · {alert['library']}" if alert.get("library") else ""))
        text.text(f"{alert['message']} — value {fmt_figure(alert['value'])}, "
                  f"threshold {fmt_figure(alert['threshold'])}")
        text.text(f"Opened {fmt_iso(alert['timestamp'])} · {alert['id']}")
        if alert.get("silencedBy") is not None:
            text.text(f"Silenced by silence #{alert['silencedBy']} (notifications skip it)")
        if alert["acknowledged"]:
            action.markdown(":green[:material/check_circle:] Acknowledged")
            until = alert.get("acknowledgedUntil")
            action.text(f"by {alert.get('acknowledgedBy', '?')}\n{fmt_iso(alert.get('acknowledgedAt'))}"
                        + (f"\nuntil {fmt_iso(until)}" if until else ""))
        else:
            action.button("Acknowledge", key=f"ack-{alert['id']}", on_click=acknowledge,
                          args=(engine, [alert["id"]], for_s), type="primary",
                          help="Mark this alert as seen; your account is recorded with it.")
        action.button("Silence", key=f"silence-{alert['id']}", on_click=_prefill_silence, args=(alert,),
                      help="Fill the silence form below with this alert's queue and type.")


def alert_history_table(table: pd.DataFrame, tz: str = "UTC") -> None:
    """The alert history table, the message wrapped after the severity and who acknowledged it when; the
    alert ids are in the events table below (its Alert column) and on the open alerts' cards."""
    status_table(table, "Severity", {
        "Severity": _text_column(72), "State": _text_column(72), "Queue": _text_column(96),
        "Message": _text_column(132), "Type": _text_column(112),
        "Value": _number_column("%.2f", width=60), "Threshold": _number_column("%.2f", "Thresh.", width=64),
        "Opened": _datetime_column(tz, "Opened", width=106),
        "Resolved": _datetime_column(tz, "Resolved", width=106),
        "Acknowledged by": _text_column(100, "Ack. by", help="Who acknowledged the alert."),
        "Acknowledged at": _datetime_column(tz, "Ack. at", width=106),
        "Silenced by": _text_column(56, "Silence"),
        "Id": None,
    }, placeholder=UNKNOWN, row_height_px=WRAP_ROW_PX)


def alert_events_table(table: pd.DataFrame, tz: str = "UTC") -> None:
    """The alert events table."""
    status_table(table, "Severity", {"At": _datetime_column(tz, "At"), "Value": _number_column("%.2f")},
                 placeholder=UNKNOWN)


def leak_hints(hints: list[dict[str, Any]]) -> None:
    """One warning per worker whose memory trend looks like a leak, with the setting that bounds it."""
    if not hints:
        st.caption("No leak hints: no worker's RSS grew steadily over the last 2 h (see docs/memory.md).")
        return
    for hint in hints:
        with st.container(border=True):
            st.text(f"{hint['worker_name']} ({hint['library']})")
            st.warning(markdown_text(hint["message"]), icon=":material/trending_up:")
            st.markdown(f"Fix: `{hint['setting']}`")
            st.caption(markdown_text(hint["advice"]))


def theme_type() -> str:
    """The app's theme as the browser reported it ("light" or "dark"; "light" before it has)."""
    try:
        kind = st.context.theme.type
    except Exception:  # no browser connection (AppTest, bare script runs)
        kind = None
    return kind if kind in ("light", "dark") else "light"


PAGE_STYLE = """<style>
[data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; }
</style>"""


def page_style() -> None:
    """Narrower side margins of the main column, so that the tables fit it at 1440 px."""
    st.html(PAGE_STYLE)


def live_chart(container: Any, figure: go.Figure, key: str, revision: str, group: str = "") -> None:
    """A chart that a refresh updates in place: a stable element key, the viewer's zoom and legend choices
    kept while `revision` (the queue and range shown) stays the same, the app's theme, and one time axis with
    the other charts of `group`."""
    figure.update_layout(uirevision=revision)
    themed(figure, theme_type())
    with container:
        draw_in_place(figure, key, group)
