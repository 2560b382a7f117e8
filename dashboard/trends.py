"""The overview's depth sparklines: peak waiting jobs per minute of each queue over the last hour."""
from __future__ import annotations

from sqlalchemy import Engine

from storage.queries_trends import depth_trends

TREND_SPAN_S = 3600.0


def depth_sparklines(engine: Engine, now_s: float,
                     span_s: float = TREND_SPAN_S) -> dict[tuple[str, str], list[float]]:
    """(library, queue_name) to the peak waiting jobs of each stored minute of the last `span_s`, oldest
    first."""
    rows = depth_trends(engine, now_s - span_s, now_s)
    return {(str(library), str(queue)): [float(v) for v in group["waiting"]]
            for (library, queue), group in rows.groupby(["library", "queue_name"], sort=False)}
