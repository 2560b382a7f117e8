"""Job callables that the RQ reader tests enqueue (importable by real `rq worker` processes)."""
from __future__ import annotations

import time


def sleep_for(seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


def fail(message: str = "boom") -> None:
    """Raise an ordinary exception."""
    raise ValueError(message)


def noop() -> None:
    """Do nothing."""
