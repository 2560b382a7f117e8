"""Job lookup: one job by id across every configured Redis and library (read live, read-only)."""
from __future__ import annotations

import streamlit as st

from dashboard import context, job_lookup
from dashboard.job_panels import READ_ONLY_NOTE

st.title("Job lookup")
context.engine()  # refuses to run without an admin session
settings = context.settings()
st.caption(f"Reads the job's hash, result or stored outcome from every configured Redis (RQ, BullMQ, Celery). "
           f"{READ_ONLY_NOTE}")
job_id = st.text_input("Job id", key="job_lookup_id", max_chars=255, placeholder="e.g. 3f2a9c1e-…")
if job_id:
    job_lookup.lookup_section(settings, job_id)
