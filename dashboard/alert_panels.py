"""The Alerts page's panels: alerts grouped by queue, system alerts, pending breaches, silences."""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from core.silences import parse_duration_s
from core.system_alerts import SystemAlertType, stale_breach
from dashboard import context
from dashboard.components import SILENCE_PREFILL_KEY, acknowledge, alert_card
from dashboard.formatting import fmt_age, fmt_figure, fmt_iso, fmt_utc, severity_markdown
from storage.silences import ALERT_TYPES, add_silence, expire_silence, list_silences
from storage.status import newest_cycle_at_s

ACK_FOR_S = {"Until resolved": None, "15 min": 900.0, "1 h": 3600.0, "4 h": 14400.0, "1 day": 86400.0}
ANY = "Any"


def acknowledge_for() -> float | None:
    """The "Acknowledge for" choice: seconds of a snooze, or None (until resolved)."""
    choice = st.selectbox("Acknowledge for", list(ACK_FOR_S), key="alerts_ack_for",
                          help="A snoozed alert counts as unacknowledged again after this, if still firing.")
    return ACK_FOR_S[choice]


def grouped_alerts(alerts: list[dict[str, Any]], engine: Engine, for_s: float | None) -> None:
    """The alerts under one heading per queue (queues with a critical alert first), and a bulk acknowledge."""
    waiting = [a["id"] for a in alerts if not a["acknowledged"]]
    if waiting:
        st.button(f"Acknowledge all {len(waiting)} shown", key="bulk-ack", on_click=acknowledge,
                  args=(engine, waiting, for_s), help="Acknowledge every unacknowledged alert listed here.")
    by_queue: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        by_queue.setdefault(alert["queueName"], []).append(alert)
    order = sorted(by_queue, key=lambda q: (not any(a["severity"] == "critical" for a in by_queue[q]), q))
    for queue_name in order:
        st.text(f"Queue {queue_name} — {len(by_queue[queue_name])} open")
        for alert in by_queue[queue_name]:
            alert_card(alert, engine, for_s)


def system_alerts(stored: list[dict[str, Any]], engine: Engine, interval_s: float) -> None:
    """Stored system alerts, and the stale-data condition as this page sees it (evaluated, never stored)."""
    now_s = time.time()
    breach = stale_breach(newest_cycle_at_s(engine), now_s, interval_s)
    stored_stale = any(a["type"] == SystemAlertType.STALE_DATA.value for a in stored)
    if not stored and breach is None:
        return
    st.subheader("System alerts")
    for alert in stored:
        with st.container(border=True):
            st.markdown(severity_markdown(alert["severity"]))
            st.text(f"{alert['type']} · {alert['queueName']}")
            st.text(f"{alert['message']} — value {fmt_figure(alert['value'])}, since {fmt_iso(alert['timestamp'])}")
            if alert.get("silencedBy") is not None:
                st.text(f"Silenced by silence #{alert['silencedBy']}")
    if breach is not None and not stored_stale:
        st.warning(f"Stale data: no collection cycle stored for {fmt_age(breach.value)} (more than 3 intervals "
                   f"of {interval_s:g} s). Is `queuewatch collect` running? The API process raises this as an "
                   "alert; this page only shows it.", icon=":material/pause_circle:")


def pending_table(pending: pd.DataFrame, timings) -> None:
    """Breaches that are not alerts yet, with when each fires if it holds."""
    if pending.empty:
        return
    st.subheader(f"Pending ({len(pending)})")
    st.caption("Breaches that have not held for pending_s yet: not alerts, not in the API's alert list.")
    fires = [since + timings.for_queue(queue).pending_s
             for since, queue in zip(pending["pending_since_s"], pending["queue_name"])]
    table = pd.DataFrame({
        "Queue": pending["queue_name"], "Type": pending["alert_type"], "Severity": pending["severity"],
        "Value": pending["value"].astype("float64"), "Threshold": pending["threshold"].astype("float64"),
        "Pending since": pending["pending_since"], "Fires at": [fmt_utc(at_s) for at_s in fires],
    })
    tz = context.settings().timezone
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "Pending since": st.column_config.DatetimeColumn(f"Pending since ({tz})", format="MM-DD HH:mm:ss",
                                                         timezone=tz)})


def _add_silence(engine: Engine) -> None:
    actor = context.acting_admin("Silence")
    if actor is None:
        return
    state = st.session_state
    chosen = {name: (None if state.get(f"silence_{name}") in (ANY, "", None) else state[f"silence_{name}"])
              for name in ("queue", "library", "type", "severity")}
    try:
        silence = add_silence(engine, duration_s=parse_duration_s(state.get("silence_for", "")),
                              comment=state.get("silence_comment", ""), now_s=time.time(),
                              queue_glob=chosen["queue"], library=chosen["library"], alert_type=chosen["type"],
                              severity=chosen["severity"], created_by=actor.email)
    except ValueError as exc:
        state["alerts_silence_error"] = str(exc)
        return
    state.pop(SILENCE_PREFILL_KEY, None)
    st.toast(f"Silence #{silence['id']} until {fmt_iso(silence['endsAt'])}", icon=":material/notifications_off:")


def silence_form(engine: Engine) -> None:
    """The form that adds a silence (filled by an alert's Silence button)."""
    st.subheader("Silences")
    prefilled = st.session_state.get(SILENCE_PREFILL_KEY)
    if prefilled:
        st.text(f"Filled from alert {prefilled}")
    st.session_state.setdefault("silence_for", "2h")
    error = st.session_state.pop("alerts_silence_error", None)
    if error:
        st.error(f"Silence not added: {error}")
    with st.form("silence_form", border=True):
        first, second, third, fourth = st.columns(4)
        first.text_input("Queue (name or glob)", key="silence_queue", placeholder="any queue")
        second.selectbox("Library", [ANY, "rq", "bullmq", "celery"], key="silence_library")
        third.selectbox("Type", [ANY, *ALERT_TYPES], key="silence_type")
        fourth.selectbox("Severity", [ANY, "warning", "critical"], key="silence_severity")
        duration, comment = st.columns([1, 3])
        duration.text_input("For", key="silence_for", help="90s, 15m, 2h30m, 1d")
        comment.text_input("Comment", key="silence_comment", placeholder="why, and who to ask")
        st.form_submit_button("Add silence", on_click=_add_silence, args=(engine,))


def _expire(engine: Engine, silence_id: int) -> None:
    if context.acting_admin("Expiring a silence") is not None:
        expire_silence(engine, silence_id, time.time())


def silences_list(engine: Engine) -> None:
    """Silences in force, each with an Expire button."""
    rows = list_silences(engine, time.time())
    if not rows:
        st.caption("No silence in force.")
    for silence in rows:
        with st.container(border=True):
            text, action = st.columns([4, 1], vertical_alignment="center")
            matchers = ", ".join(f"{name} {silence[name]}" for name in ("queue", "library", "type", "severity")
                                 if silence[name] is not None) or "every alert"
            text.text(f"#{silence['id']} · {matchers} · until {fmt_iso(silence['endsAt'])} · "
                      f"{silence['silencedAlerts']} alert(s) silenced now")
            text.text(f"{silence['comment']} — by {silence['createdBy'] or '?'}")
            action.button("Expire", key=f"expire-silence-{silence['id']}", on_click=_expire,
                          args=(engine, silence["id"]))


