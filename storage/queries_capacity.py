"""Capacity and timeout advice per queue from the stored snapshots (the arithmetic is core.capacity)."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, and_, select, true

from core.capacity import FlowWindow, capacity, drain_text, timeout_advice
from core.derive import RATE_WINDOW_S
from core.sketch import Sketch
from storage.queries_common import reading
from storage.queries_details import details_of
from storage.queries_latest import latest_snapshot, latest_snapshots
from storage.queries_series import range_sketches
from storage.schema import queue_samples, series

FLOW_WINDOW_S = RATE_WINDOW_S
"""The window (s) over which arrival and completion rates are measured: the last 5 min of snapshots."""
AHEAD_S = 86400.0


def flow_windows(engine: Engine, now_s: float, window_s: float = FLOW_WINDOW_S,
                 queue_name: str | None = None, library: str | None = None) -> dict[tuple[str, str], FlowWindow]:
    """(library, queue) -> FlowWindow over the snapshots of (now_s − window_s, now_s]; queues with fewer than
    two snapshots there have none (their rates are not measured)."""
    t = queue_samples
    since_ms = int((now_s - window_s) * 1000)
    wanted = true()
    if queue_name is not None:
        wanted = and_(wanted, series.c.queue_name == queue_name)
    if library is not None:
        wanted = and_(wanted, series.c.library == library)
    ids = select(series.c.id).where(wanted).scalar_subquery()
    # each series' own key range (series_id, sampled_at_ms): never a scan of the whole table
    condition = and_(t.c.series_id.in_(ids), t.c.sampled_at_ms > since_ms,
                     t.c.sampled_at_ms <= int(now_s * 1000) + int(AHEAD_S * 1000))
    query = (select(series.c.library, series.c.queue_name, t.c.sampled_at_ms, t.c.waiting, t.c.active,
                    t.c.finished_delta, t.c.failed_delta)
             .select_from(t.join(series, series.c.id == t.c.series_id)).where(condition)
             .order_by(t.c.series_id, t.c.sampled_at_ms))
    grouped: dict[tuple[str, str], list] = {}
    with reading(engine) as conn:
        for row in conn.execute(query):
            grouped.setdefault((row.library, row.queue_name), []).append(row)
    windows = {}
    for key, rows in grouped.items():
        if len(rows) < 2:
            continue
        first, last = rows[0], rows[-1]
        span_s = (last.sampled_at_ms - first.sampled_at_ms) / 1000.0
        if span_s <= 0:
            continue
        ended = sum(r.finished_delta + r.failed_delta for r in rows[1:])
        windows[key] = FlowWindow(window_s=span_s, backlog_start=first.waiting + first.active,
                                  backlog_end=last.waiting + last.active, ended=ended,
                                  mean_active=sum(r.active for r in rows) / len(rows))
    return windows


def _capacity_dict(window: FlowWindow | None, mean_run_ms: float | None, wait_target_s: float) -> dict[str, Any]:
    figures = capacity(window, mean_run_ms, wait_target_s)
    return {**asdict(figures), "drain_text": drain_text(figures), "window_s": window.window_s if window else None}


def stored_processing_sketch(engine: Engine, queue_name: str, library: str, since_s: float,
                             now_s: float) -> Sketch:
    """The processing sketch of the run times stored from `since_s` on (0: all), up to a clock a day ahead."""
    return range_sketches(engine, queue_name, since_s, now_s + AHEAD_S, library=library)[0]


def queue_advice(engine: Engine, queue_name: str, *, library: str | None = None, wait_target_s: float,
                 now_s: float | None = None, processing: Sketch | None = None) -> dict[str, Any] | None:
    """Capacity (over the last FLOW_WINDOW_S) and timeout advice (over all stored history) of one queue;
    None for an unknown queue. `processing`: the sketch of every stored run time when the caller has it
    (stored_processing_sketch's), else it is read."""
    now_s = time.time() if now_s is None else now_s
    row = latest_snapshot(engine, queue_name, library=library)
    if row is None:
        return None
    library = str(row["library"])
    windows = flow_windows(engine, now_s, queue_name=queue_name, library=library)
    if processing is None:
        processing = stored_processing_sketch(engine, queue_name, library, 0.0, now_s)
    p99, p999 = processing.quantiles((0.99, 0.999)) if processing.count else (None, None)
    configured = details_of(row).get("timeout_s")
    advice = timeout_advice(p99, p999, float(processing.max) if processing.count else None,
                            float(configured) if isinstance(configured, (int, float)) else None)
    return {"queue_name": queue_name, "library": library,
            "capacity": _capacity_dict(windows.get((library, queue_name)), row.get("avg_processing_ms"),
                                       wait_target_s),
            "timeout": {**asdict(advice), "sample_count": int(processing.count)}}


def all_capacity(engine: Engine, *, wait_target_s: float, now_s: float | None = None) -> list[dict[str, Any]]:
    """Capacity figures of every queue's newest snapshot (for /metrics): library, queue_name and figures."""
    now_s = time.time() if now_s is None else now_s
    latest = latest_snapshots(engine)
    if latest.empty:
        return []
    windows = flow_windows(engine, now_s)
    out = []
    for row in latest.to_dict("records"):
        key = (str(row["library"]), str(row["queue_name"]))
        mean_ms = row.get("avg_processing_ms")
        mean_ms = None if mean_ms is None or mean_ms != mean_ms else float(mean_ms)
        out.append({"library": key[0], "queue_name": key[1], **_capacity_dict(windows.get(key), mean_ms,
                                                                               wait_target_s)})
    return out
