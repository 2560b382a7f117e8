"""What an agent publishes: the Redis keys and the report format (JSON), shared by agents and the collector.

Keys, with the prefix `queuewatch` by default:
- `<prefix>:agent:<library>:<worker id>`: STRING, one JSON report, expiring `ttl_s` (3 periods) after a write;
- `<prefix>:agents`: ZSET of those key names scored by their expiry (epoch seconds, agent clock), so a reader
  finds every report with one ZRANGEBYSCORE and one MGET instead of scanning the keyspace. Agents remove
  members that expired more than INDEX_GRACE_S ago; a member whose key is gone is an agent that stopped
  reporting (killed, hung or cut off from Redis).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULT_PREFIX = "queuewatch"
REPORT_VERSION = 1
TTL_PERIODS = 3
INDEX_GRACE_S = 300.0
LIBRARIES = ("rq", "celery", "bullmq")


def index_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The ZSET that lists every agent's report key."""
    return f"{prefix}:agents"


def report_key(library: str, worker_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The key of one worker's report."""
    return f"{prefix}:agent:{library}:{worker_id}"


def identity_of_key(key: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str] | None:
    """(library, worker id) of a report key; None for a key of another prefix or shape."""
    head = f"{prefix}:agent:"
    if not key.startswith(head):
        return None
    library, sep, worker_id = key[len(head):].partition(":")
    return (library, worker_id) if sep and library and worker_id else None


@dataclass(frozen=True)
class AgentReport:
    """One worker process as its agent last saw it; sizes in MB, times in epoch seconds (agent clock)."""

    library: str
    worker_id: str
    queues: tuple[str, ...]
    pid: int
    hostname: str
    started_at_s: float
    reported_at_s: float
    period_s: float
    ttl_s: float
    jobs_processed: int = 0
    failed_jobs: int = 0
    state: str = "idle"
    role: str = "worker"  # "worker"; Celery: "main" (the parent) or "child" (a prefork pool process)
    parent_id: str | None = None
    rss_mb: float | None = None
    heap_used_mb: float | None = None
    heap_total_mb: float | None = None
    external_mb: float | None = None
    array_buffers_mb: float | None = None
    memory_percentage: float | None = None  # of memory_limit_mb, the agent's own limit
    memory_limit_mb: float | None = None
    children_rss_mb: float | None = None
    client_ids: tuple[int, ...] = ()  # Redis CLIENT IDs of the worker's own connections, where known (BullMQ)
    version: int = REPORT_VERSION

    @property
    def identity(self) -> tuple[str, str]:
        return (self.library, self.worker_id)

    def to_json(self) -> str:
        """The report as published."""
        data = asdict(self)
        data["queues"], data["client_ids"] = list(self.queues), list(self.client_ids)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> AgentReport | None:
        """A published report, or None when it is missing or not a report (unknown fields are ignored).

        Only the shape is checked here; the collector reads reports through collector.agents.parse_report,
        which also bounds every number and name."""
        if raw is None:
            return None
        try:
            data: Any = json.loads(raw)
            if not isinstance(data, dict):
                return None
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            values["queues"] = tuple(str(q) for q in values.get("queues") or ())
            values["client_ids"] = tuple(int(i) for i in values.get("client_ids") or ())
            report = cls(**values)
        except (TypeError, ValueError, OverflowError, RecursionError):
            return None
        if not report.library or not report.worker_id:
            return None
        return report
