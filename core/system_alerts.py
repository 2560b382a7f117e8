"""System alerts beside the spec's five queue alert types: a Redis that cannot be read, and stale data."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from core.health import Severity

STALE_AFTER_INTERVALS = 3
"""Data is stale when no cycle was stored for this many collection intervals."""
COLLECTOR_SCOPE = "(collector)"
"""The queue_name of the stale-data alert (the alert type, not this name, tells system alerts apart)."""


class SystemAlertType(str, Enum):
    REDIS_UNREACHABLE = "redis_unreachable"
    STALE_DATA = "stale_data"


SYSTEM_TYPES = frozenset(t.value for t in SystemAlertType)


@dataclass(frozen=True)
class SystemBreach:
    """A system condition, planned like a queue's breach (see alert_rules.plan_cycle)."""

    alert_type: SystemAlertType
    severity: Severity
    value: float
    threshold: float

    @property
    def message(self) -> str:
        if self.alert_type is SystemAlertType.REDIS_UNREACHABLE:
            return "Redis cannot be read"
        return "No stored collection cycle for 3 intervals: is `queuewatch collect` running?"


def redis_breach(failed_cycles: int) -> SystemBreach:
    """One Redis URL failed to answer this cycle (`failed_cycles` in a row)."""
    return SystemBreach(SystemAlertType.REDIS_UNREACHABLE, Severity.CRITICAL, float(failed_cycles), 0.0)


def stale_breach(newest_cycle_at_s: float | None, now_s: float, interval_s: float) -> SystemBreach | None:
    """The stale-data breach when the newest stored cycle is older than 3 intervals (None: fresh, or no
    cycle ever stored: nothing to be stale). Its value is the age in seconds, its threshold 3 intervals."""
    if newest_cycle_at_s is None:
        return None
    age_s, limit_s = now_s - newest_cycle_at_s, STALE_AFTER_INTERVALS * interval_s
    if age_s <= limit_s:
        return None
    return SystemBreach(SystemAlertType.STALE_DATA, Severity.CRITICAL, round(age_s, 1), limit_s)
