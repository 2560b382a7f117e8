"""Queue health: thresholds for the five alert types and the evaluation of one queue's metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping


class Severity(str, Enum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertType(str, Enum):
    QUEUE_DEPTH = "queue_depth"
    ERROR_RATE = "error_rate"
    TIMEOUT_RATE = "timeout_rate"
    PROCESSING_TIME = "processing_time"
    MEMORY_USAGE = "memory_usage"


@dataclass(frozen=True)
class ThresholdSet:
    """Warning and critical levels for one queue (or the global default).

    queue_depth is compared with `waiting`, error/timeout rates with the percentages over the rate window,
    processing_time with p95 processing time, memory_usage with the largest RSS among the queue's workers
    (soft limit = warning, hard limit = critical).
    """

    queue_depth_warning: float = 200
    queue_depth_critical: float = 1000
    error_rate_warning_pct: float = 5.0
    error_rate_critical_pct: float = 15.0
    timeout_rate_warning_pct: float = 2.0
    timeout_rate_critical_pct: float = 5.0
    processing_time_warning_ms: float = 30_000
    processing_time_critical_ms: float = 120_000
    memory_soft_limit_mb: float = 512
    memory_hard_limit_mb: float = 1024
    memory_warning_threshold_pct: float = 75
    recycle_after_jobs: float = 1000
    recycle_after_uptime_s: float = 4 * 3600

    def validate(self) -> None:
        pairs = [
            ("queue_depth_warning", "queue_depth_critical"),
            ("error_rate_warning_pct", "error_rate_critical_pct"),
            ("timeout_rate_warning_pct", "timeout_rate_critical_pct"),
            ("processing_time_warning_ms", "processing_time_critical_ms"),
            ("memory_soft_limit_mb", "memory_hard_limit_mb"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def levels(self, alert_type: AlertType) -> tuple[float, float]:
        """(warning, critical) for one alert type."""
        return {
            AlertType.QUEUE_DEPTH: (self.queue_depth_warning, self.queue_depth_critical),
            AlertType.ERROR_RATE: (self.error_rate_warning_pct, self.error_rate_critical_pct),
            AlertType.TIMEOUT_RATE: (self.timeout_rate_warning_pct, self.timeout_rate_critical_pct),
            AlertType.PROCESSING_TIME: (self.processing_time_warning_ms, self.processing_time_critical_ms),
            AlertType.MEMORY_USAGE: (self.memory_soft_limit_mb, self.memory_hard_limit_mb),
        }[alert_type]


@dataclass(frozen=True)
class Thresholds:
    """Global thresholds with per-queue overrides."""

    default: ThresholdSet = field(default_factory=ThresholdSet)
    per_queue: Mapping[str, ThresholdSet] = field(default_factory=dict)

    def for_queue(self, queue_name: str) -> ThresholdSet:
        return self.per_queue.get(queue_name, self.default)


_LABELS = {
    AlertType.QUEUE_DEPTH: ("Queue depth", ""),
    AlertType.ERROR_RATE: ("Error rate", "%"),
    AlertType.TIMEOUT_RATE: ("Timeout rate", "%"),
    AlertType.PROCESSING_TIME: ("p95 processing time", "ms"),
    AlertType.MEMORY_USAGE: ("Worker memory usage", "MB"),
}


@dataclass(frozen=True)
class Breach:
    """One threshold crossed by one queue."""

    alert_type: AlertType
    severity: Severity
    value: float
    threshold: float

    @property
    def message(self) -> str:
        """Alert message without figures, as the spec shows ("Queue depth above warning threshold")."""
        if self.alert_type is AlertType.MEMORY_USAGE:
            return "Worker memory usage critical" if self.severity is Severity.CRITICAL else "Worker memory usage high"
        label, _ = _LABELS[self.alert_type]
        return f"{label} above {self.severity.value} threshold"

    @property
    def issue(self) -> str:
        """Health issue string with figures ("Queue depth above warning threshold (215 > 200)")."""
        label, unit = _LABELS[self.alert_type]
        return (f"{label} above {self.severity.value} threshold "
                f"({_fmt(self.value)}{unit} > {_fmt(self.threshold)}{unit})")


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:.1f}"


def metric_values(metrics: Mapping[str, float | None]) -> dict[AlertType, float | None]:
    """The figure each alert type is judged on, from a QueueMetrics-shaped mapping."""
    return {
        AlertType.QUEUE_DEPTH: metrics.get("waiting"),
        AlertType.ERROR_RATE: metrics.get("errorRate"),
        AlertType.TIMEOUT_RATE: metrics.get("timeoutRate"),
        AlertType.PROCESSING_TIME: metrics.get("p95ProcessingTimeMs"),
        AlertType.MEMORY_USAGE: metrics.get("memoryUsageMB"),
    }


RATE_TYPES = frozenset({AlertType.ERROR_RATE, AlertType.TIMEOUT_RATE})


def evaluate(metrics: Mapping[str, float | None], thresholds: ThresholdSet, *, ended_jobs: float | None = None,
             min_jobs: float = 0.0) -> list[Breach]:
    """Every threshold the queue crosses now (strictly above), at its highest severity.

    Error and timeout rates are judged only when at least `min_jobs` jobs ended in the rate window
    (`ended_jobs`; None: not counted, so judged).
    """
    breaches: list[Breach] = []
    too_few = ended_jobs is not None and ended_jobs < min_jobs
    for alert_type, value in metric_values(metrics).items():
        if value is None or (too_few and alert_type in RATE_TYPES):
            continue
        warning, critical = thresholds.levels(alert_type)
        if value > critical:
            breaches.append(Breach(alert_type, Severity.CRITICAL, float(value), critical))
        elif value > warning:
            breaches.append(Breach(alert_type, Severity.WARNING, float(value), warning))
    return breaches


def idle_backlog_issue(waiting: int, live_workers: int | None) -> str | None:
    """"No live worker for 25 waiting jobs" when jobs wait and no live worker consumes the queue (None: unknown)."""
    if live_workers is None or live_workers > 0 or waiting <= 0:
        return None
    return f"No live worker for {waiting} waiting job{'s' if waiting != 1 else ''}"


def status_of(breaches: list[Breach]) -> str:
    """'healthy', 'warning' or 'critical' for a queue with these breaches."""
    if any(b.severity is Severity.CRITICAL for b in breaches):
        return "critical"
    return "warning" if breaches else "healthy"
