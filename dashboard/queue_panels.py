"""Streamlit parts of the queue detail page: the queue's figures now, BullMQ's extras, what is unmeasured."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import streamlit as st

from dashboard import charts, tables
from dashboard.components import live_chart
from dashboard.formatting import markdown_text
from dashboard.libraries import explain, library_name
from storage.queries_details import BullMQDetails
from storage.queries_latest import unavailable_of

THROUGHPUT_SOURCES = {"metrics": "metrics counters (`:metrics:completed|failed`)",
                      "events": "events stream (`:events`)"}


def current_tiles(row: Mapping[str, Any]) -> None:
    """The newest snapshot's figures as two rows of five tiles ("n/a" for what the backend cannot measure)."""
    figures = tables.current_figures(row)
    for start in (0, 5):
        for column, (label, text) in zip(st.columns(5), figures[start:start + 5]):
            column.metric(label, text, border=True)


def stale_warning(row: Mapping[str, Any]) -> None:
    """Says that the figures below are the last a queue's library reported, not current ones."""
    note = tables.stale_note(float(row["sampled_at_s"]), library_name(str(row.get("library") or "")))
    st.warning(f"{note}. The figures below are the last it reported, not current ones.",
               icon=":material/history:")


def bullmq_panel(details: BullMQDetails) -> None:
    """Paused badge, stalled jobs, throughput source and the waiting jobs per priority tier."""
    if details.paused:
        st.badge("Paused", icon=":material/pause_circle:", color="orange")
    chart, figures = st.columns([3, 1])
    live_chart(chart, charts.priority_figure(tables.priority_tier_table(details)), "bullmq_priorities",
               details.prefix or "")
    figures.metric("Stalled", "–" if details.stalled is None else f"{details.stalled:,}", border=True,
                   help="Active jobs whose lock is gone: their worker died; BullMQ's next stalled check "
                        "moves them back to waiting.")
    source = details.throughput_source or "–"
    figures.metric("Throughput source", source, border=True,
                   help="Where jobs/min and the rates come from: " + "; ".join(
                       f"{name}: {text}" for name, text in THROUGHPUT_SOURCES.items()) + ".")
    if details.events_gap:
        figures.warning("The events stream was trimmed between two cycles: some finishes were not counted.",
                        icon=":material/warning:")
    if details.prefix:
        figures.caption(f"Prefix {markdown_text(details.prefix)}")


def unavailable_note(row: Mapping[str, Any]) -> None:
    """Which of the queue's figures its backend cannot measure, and why (an info box for Celery)."""
    fields = unavailable_of(row)
    if not fields:
        return
    library = str(row.get("library") or "")
    text = (f"**Not measured for this {markdown_text(library_name(library))} queue** (shown as n/a). "
            f"{explain(library, fields)}")
    if library == "celery":
        st.info(text, icon=":material/info:")
    else:
        st.caption(text)


def not_drawn_note(library: str, fields: Iterable[str]) -> None:
    """A caption under the charts naming the series left out because no point measured them, and why."""
    fields = list(fields)
    if fields:
        st.caption(f"Not drawn, never measured in this range. {explain(library, fields)}")
