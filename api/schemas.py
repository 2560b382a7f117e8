"""Response models: field for field the spec's TypeScript interfaces (times are ISO 8601 UTC strings)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Timestamp = str  # e.g. "2025-10-19T12:00:00.000Z"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueMetrics(Strict):
    queueName: str
    waiting: int
    active: int
    delayed: int
    failed: int
    completed: int
    jobsPerMinute: float
    errorRate: float = Field(description="percentage")
    timeoutRate: float = Field(description="percentage")
    avgProcessingTimeMs: float
    p50ProcessingTimeMs: float
    p95ProcessingTimeMs: float
    p99ProcessingTimeMs: float
    oldestWaitingMs: float
    memoryUsageMB: float
    memoryPercentage: float
    timestamp: Timestamp


class QueueHealthStatus(Strict):
    queueName: str
    healthy: bool
    status: Literal["healthy", "warning", "critical"]
    issues: list[str]
    metrics: QueueMetrics
    timestamp: Timestamp


class QueueMetricsResponse(Strict):
    current: QueueMetrics
    history: list[QueueMetrics] | None = Field(default=None, description="present when history=true")


class QueuesSummary(Strict):
    totalQueues: int
    healthyQueues: int
    warningQueues: int
    criticalQueues: int
    totalWaiting: int
    totalActive: int
    totalFailed: int
    activeAlerts: int
    avgJobsPerMinute: float
    avgErrorRate: float


class DashboardSummaryResponse(QueuesSummary):
    timestamp: Timestamp


class MemoryStats(Strict):
    heapUsed: float = Field(description="MB")
    heapTotal: float = Field(description="MB")
    external: float = Field(description="MB")
    rss: float = Field(description="MB")
    arrayBuffers: float = Field(description="MB")
    percentage: float
    timestamp: Timestamp


class WorkersSummary(Strict):
    totalWorkers: int
    totalJobsProcessed: int
    averageMemoryUsage: float
    workersNeedingRecycle: int


class QueueSystemHealthResponse(Strict):
    timestamp: Timestamp
    healthy: bool
    queues: QueuesSummary
    workers: WorkersSummary
    memory: MemoryStats


class Alert(Strict):
    id: str
    severity: Literal["warning", "critical"]
    queueName: str
    type: Literal["queue_depth", "error_rate", "timeout_rate", "processing_time", "memory_usage"]
    message: str
    value: float
    threshold: float
    timestamp: Timestamp
    acknowledged: bool
    acknowledgedBy: str | None = None
    acknowledgedAt: Timestamp | None = None


class AcknowledgeAlertResponse(Strict):
    success: bool
    alert: Alert


class WorkerMemoryState(Strict):
    workerId: str
    queueName: str
    jobsProcessed: int
    startTime: Timestamp
    lastMemoryCheck: MemoryStats
    shouldRecycle: bool
    recycleReason: str | None = None


class WorkerMemorySummary(Strict):
    totalWorkers: int
    totalJobsProcessed: int
    averageMemoryUsage: float
    workersNeedingRecycle: int
    workers: list[WorkerMemoryState]


class MemoryLimits(Strict):
    softLimitMB: float
    hardLimitMB: float
    warningThresholdPercent: float


class MemoryStatus(Strict):
    withinLimits: bool
    exceedsWarning: bool
    exceedsCritical: bool


class CurrentMemoryResponse(Strict):
    stats: MemoryStats
    limits: MemoryLimits
    status: MemoryStatus


class ExecutionStatsResponse(Strict):
    queueName: str
    sampleCount: int
    min: float
    max: float
    avg: float
    p50: float
    p95: float
    p99: float
    recentExecutions: list[float]


class ErrorResponse(Strict):
    success: Literal[False]
    error: str
    code: str | None = None
    details: Any = None


class RateLimitedResponse(Strict):
    success: Literal[False]
    error: Literal["Rate limit exceeded"]
    retryAfter: int
