"""The job lookup page's parts: clients for the configured Redis (shared), the lookup and its rendering.

The lookup reads Redis live through collector.job_lookup (read-only); everything found is plain text and is
shown with st.text, st.code or table cells, never as markdown.
"""
from __future__ import annotations

import pandas as pd
import redis
import streamlit as st

from collector.job_lookup import FoundJob, LookupTarget, lookup_everywhere, usable_job_id
from collector.rq_layout import RQLayout
from config.settings import Settings, redacted
from dashboard.formatting import fmt_utc

LOOKUP_TIMEOUT_S = 3.0
NOT_FOUND = "Job {job_id} was not found in any configured Redis ({sources})."


@st.cache_resource(show_spinner=False)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=LOOKUP_TIMEOUT_S, socket_connect_timeout=LOOKUP_TIMEOUT_S)


def targets(settings: Settings) -> list[LookupTarget]:
    """Every configured Redis with the libraries and prefixes the collector reads there."""
    prefixes = tuple(p.strip() for p in settings.bullmq_prefixes.split(",") if p.strip()) or ("bull",)
    return [LookupTarget(client=_client(url), source=redacted(url), libraries=tuple(settings.library_names),
                         rq_layout=RQLayout(settings.rq_key_prefix), bullmq_prefixes=prefixes)
            for url in settings.redis_urls]


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} s"


def show_job(job: FoundJob) -> None:
    """One found job: where, state, timings, then its result or its error."""
    figures = {"Library": job.library, "Queue": job.queue or "n/a", "State": job.state,
               "Function / job": job.name or "n/a", "Worker": job.worker or "n/a", "Redis": job.source}
    timings = {"Enqueued": fmt_utc(job.enqueued_at_s), "Started": fmt_utc(job.started_at_s),
               "Ended": fmt_utc(job.ended_at_s), "Wait": _seconds(job.wait_s), "Run": _seconds(job.run_s)}
    left, right = st.columns(2)
    for column, values in ((left, figures), (right, timings)):
        column.dataframe(pd.DataFrame({"": list(values), "Value": list(values.values())}), hide_index=True,
                         width="stretch")
    if job.reason:
        st.caption("Failure message")
        st.text(job.reason)
    if job.error:
        st.caption("Traceback")
        st.code(job.error, language=None, wrap_lines=True)
    if job.result:
        st.caption("Result")
        st.code(job.result, language=None, wrap_lines=True)
    elif not job.error and not job.reason:
        st.caption("No result or error stored.")


def lookup_section(settings: Settings, raw_id: str) -> None:
    """Look the id up everywhere and show every job found, or why none was."""
    job_id = usable_job_id(raw_id)
    if job_id is None:
        st.warning("A job id is 1 to 255 characters without NUL or glob characters (* ? [ ]).")
        return
    found, errors = lookup_everywhere(targets(settings), job_id)
    for error in errors:
        st.error("A configured Redis could not be read:")
        st.text(error)
    if not found:
        st.info("Not found.", icon=":material/search_off:")
        st.text(NOT_FOUND.format(job_id=job_id, sources=", ".join(redacted(u) for u in settings.redis_urls)))
        return
    for job in found:
        show_job(job)
