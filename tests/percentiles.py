"""The documented percentile rule, computed exactly from known durations (what every figure is checked against)."""
from __future__ import annotations

import numpy as np


def nearest_rank(values, q: float) -> float:
    """The value at rank ceil(q * n) of the sorted values: at least (1 - q) of them are at least this."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), q, method="inverted_cdf"))
