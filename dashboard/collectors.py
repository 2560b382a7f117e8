"""The Overview's "Collectors" table: which collector read which Redis, and when (from the lease table)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from dashboard.formatting import fmt_age, fmt_utc

COLUMNS = ("Redis", "Read by", "Last read", "At", "Lease")


def collector_reads_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One line per Redis target: the collector that stored its newest reading, how long ago, and who holds
    its lease now (`rows` from storage.leases.lease_rows; ages on the database's clock)."""
    lines = []
    for row in rows:
        now_s, read_at_s = row["now_s"], row["read_at_s"]
        lease = (f"{row['owner']}, {max(0.0, row['expires_at_s'] - now_s):.1f} s left" if row["held"]
                 else "free (taken by the next collector that looks)")
        lines.append({"Redis": row["target"], "Read by": row["read_by"] or "–",
                      "Last read": fmt_age(None if read_at_s is None else now_s - read_at_s),
                      "At": fmt_utc(read_at_s), "Lease": lease})
    return pd.DataFrame(lines, columns=list(COLUMNS))
