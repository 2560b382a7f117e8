"""Short depth trends per queue from the 1-minute rollups (the overview's sparklines)."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, and_, select

from storage.layout import to_ms
from storage.queries_common import frame, reading
from storage.schema import ROLLUP_LEVELS_S, queue_rollups, series

TREND_LEVEL_S = ROLLUP_LEVELS_S[0]
TREND_COLUMNS = ["library", "queue_name", "bucket_start_s", "waiting"]


def depth_trends(engine: Engine, since_s: float, until_s: float) -> pd.DataFrame:
    """Peak waiting jobs per queue and 1-minute bucket in [since_s, until_s]: library, queue_name,
    bucket_start_s, waiting, ordered by queue and time (minutes without a snapshot have no row)."""
    r, s = queue_rollups, series
    statement = (select(s.c.library, s.c.queue_name, r.c.bucket_ms, r.c.waiting)
                 .select_from(r.join(s, s.c.id == r.c.series_id))
                 .where(and_(r.c.level_s == TREND_LEVEL_S,
                             r.c.bucket_ms >= to_ms(since_s) - TREND_LEVEL_S * 1000,
                             r.c.bucket_ms <= to_ms(until_s)))
                 .order_by(s.c.library, s.c.queue_name, r.c.bucket_ms))
    with reading(engine) as conn:
        rows = frame(conn, statement, ["library", "queue_name", "bucket_ms", "waiting"])
    if rows.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    rows["bucket_start_s"] = rows["bucket_ms"].astype("float64") / 1000.0
    return rows[TREND_COLUMNS].reset_index(drop=True)
