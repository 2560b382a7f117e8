"""Workers & memory: latest state of every worker with recycle flags, RSS against the limits, host memory."""
from __future__ import annotations

import time

import streamlit as st

from dashboard import charts, components, context, ranges, tables
from dashboard.ranges import RangeChoice
from storage import queries
from storage.memory_trend import leak_hints

st.title("Workers & memory")
engine = context.engine()
limits = context.thresholds().default
choice = ranges.range_picker("workers_range", default="1 h")


@context.live_fragment(context.MEMORY_REFRESH_S)
def live_workers(choice: RangeChoice) -> None:
    """Worker tiles, then the table and RSS chart of the chosen libraries' workers, and host memory."""
    since_s, until_s = choice.bounds(time.time())
    tz = context.settings().timezone
    with context.storage_errors():
        summary = queries.worker_memory_summary(engine, context.thresholds())
        if not summary["totalWorkers"] and queries.newest_sample_at_s(engine) is None:
            components.empty_state()
            return
    components.worker_tiles(summary)
    st.subheader("Workers")
    with st.columns([1, 2])[0]:
        libraries = components.library_filter("workers_libraries")
    with context.storage_errors():
        workers = queries.worker_table(engine, context.thresholds(), seen_since_s=since_s,
                                       libraries=libraries)
        memory = queries.worker_memory_series(engine, since_s, until_s, libraries=libraries)
        host = queries.host_memory_series(engine, since_s, until_s)
    if workers.empty:
        st.info("No workers of these libraries were registered in this range.")
    else:
        components.worker_table(tables.worker_display_table(workers), tz)
        st.caption("State *stale*: heartbeat expired; *gone*: no longer registered. Recycling follows the "
                   f"job limit ({limits.recycle_after_jobs:.0f}), uptime "
                   f"({limits.recycle_after_uptime_s / 3600:g} h) and hard memory limit "
                   f"({limits.memory_hard_limit_mb:.0f} MB). Memory source: *psutil* for workers on the "
                   "collector's host, *agent* for workers running the queuewatch agent; *n/a*: not measured "
                   "(see docs/memory.md). The tiles count every library.")
    revision = f"{choice.label}:{choice.first_day}:{choice.last_day}:{','.join(libraries or [])}"
    left, right = st.columns(2)
    if memory.empty:
        left.info("No worker memory measured in this range (workers on other hosts need the agent).")
    else:
        components.live_chart(left, charts.worker_memory_figure(memory, limits.memory_soft_limit_mb,
                                                                limits.memory_hard_limit_mb, tz=tz),
                              "workers_memory", revision, group="workers_time")
    if host.empty:
        right.info("No host memory recorded in this range.")
    else:
        components.live_chart(right, charts.host_memory_figure(host, tz=tz), "workers_host_memory", revision,
                              group="workers_time")
    st.subheader("Leak hints")
    with context.storage_errors():
        hints = leak_hints(engine, context.thresholds(), time.time())
    components.leak_hints(hints)


live_workers(choice)
