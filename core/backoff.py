"""Capped exponential backoff, shared by the collection loop and the Celery event listener."""
from __future__ import annotations


def backoff_s(base_s: float, failures: int, cap_s: float) -> float:
    """Wait before the next try: `base_s`, doubled per consecutive failure, at most `cap_s`."""
    if failures <= 0:
        return base_s
    return min(cap_s, base_s * 2 ** min(failures, 16))
