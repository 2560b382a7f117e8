"""Reading what worker agents (queuewatch_agent) publish: two round trips, no keyspace scan, no write.

1. ZRANGEBYSCORE of the index over entries that expire after now - INDEX_GRACE_S (bounded by `limit`);
2. MGET of those report keys (skipped when the index is empty).
An index entry whose key is gone is an agent that stopped reporting (its TTL ran out): it is `vanished`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import redis

from core.model import WorkerReading
from queuewatch_agent.memory import FIELDS as MEMORY_FIELDS
from queuewatch_agent.memory import percentage_of
from queuewatch_agent.report import (
    DEFAULT_PREFIX,
    INDEX_GRACE_S,
    AgentReport,
    identity_of_key,
    index_key,
)

MAX_AGENTS = 10_000
AGENT_SOURCE = "agent"
STALE_STATE = "stale"
WorkerKey = tuple[str, str]  # (library, worker name / id)


@dataclass(frozen=True)
class AgentIndex:
    """Live reports by (library, worker id), and the identities whose reports expired."""

    live: dict[WorkerKey, AgentReport] = field(default_factory=dict)
    vanished: frozenset[WorkerKey] = frozenset()
    round_trips: int = 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_agent_index(client: redis.Redis, now_s: float, *, prefix: str = DEFAULT_PREFIX,
                     limit: int = MAX_AGENTS) -> AgentIndex:
    """Every agent report that has not expired, and the agents that recently stopped reporting."""
    members = client.zrangebyscore(index_key(prefix), now_s - INDEX_GRACE_S, "+inf", start=0, num=limit)
    keys = [_text(member) for member in members]
    if not keys:
        return AgentIndex(round_trips=1)
    live: dict[WorkerKey, AgentReport] = {}
    vanished: set[WorkerKey] = set()
    for key, raw in zip(keys, client.mget(keys)):
        identity = identity_of_key(key, prefix)
        if identity is None:
            continue
        report = AgentReport.from_json(raw)
        if report is None:
            vanished.add(identity)
        else:
            live[report.identity] = report
    return AgentIndex(live=live, vanished=frozenset(vanished - set(live)), round_trips=2)


def read_agents(client: redis.Redis, now_s: float, *,
                prefix: str = DEFAULT_PREFIX) -> dict[WorkerKey, AgentReport]:
    """Live agent reports by (library, worker id), in at most two round trips."""
    return read_agent_index(client, now_s, prefix=prefix).live


def agent_memory(report: AgentReport, hard_limit_mb: float) -> dict[str, float] | None:
    """A report's figures as worker-row memory columns, percentage against the queue's hard limit."""
    if report.rss_mb is None:
        return None
    figures = {name: getattr(report, name) for name in MEMORY_FIELDS}
    if any(value is None for value in figures.values()):
        return None
    return {**figures, "memory_percentage": percentage_of(report.rss_mb, hard_limit_mb)}


def agent_worker(report: AgentReport) -> WorkerReading:
    """A worker known only from its agent (no registry entry, e.g. BullMQ or a Celery pool child)."""
    failed = max(0, min(report.failed_jobs, report.jobs_processed))
    return WorkerReading(
        name=report.worker_id, library=report.library, queues=list(report.queues), pid=report.pid,
        hostname=report.hostname, state=report.state, alive=True,
        successful_jobs=report.jobs_processed - failed, failed_jobs=failed,
        birth_at_s=report.started_at_s, last_heartbeat_at_s=report.reported_at_s,
    )


def client_id_in_name(name: str) -> int | None:
    """The Redis client id that ends a worker name found by its connection (BullMQ: `<queue>#<id>`)."""
    _, sep, tail = name.rpartition("#")
    return int(tail) if sep and tail.isdigit() else None


def with_agents(workers: list[WorkerReading], agents: AgentIndex,
                ) -> list[tuple[WorkerReading, AgentReport | None]]:
    """Registry workers paired with their agent report, then agent-only workers.

    A report matches a worker of its library by name (RQ worker name, Celery node name), or by one of its
    connections' client ids for workers named after a connection (BullMQ); the larger job count wins. A
    registry worker whose agent stopped reporting (report expired) is not alive, whatever its registry says.
    """
    by_client_id = {(r.library, cid): r for r in agents.live.values() for cid in r.client_ids}
    paired: list[tuple[WorkerReading, AgentReport | None]] = []
    matched: set[WorkerKey] = set()
    for worker in workers:
        key = (worker.library, worker.name)
        report = agents.live.get(key)
        client_id = client_id_in_name(worker.name) if report is None else None
        if client_id is not None:
            report = by_client_id.get((worker.library, client_id))
        if report is not None:
            matched.add(report.identity)
            if report.jobs_processed > worker.jobs_processed:  # e.g. BullMQ readers cannot count jobs
                counted = agent_worker(report)
                worker = replace(worker, successful_jobs=counted.successful_jobs,
                                 failed_jobs=counted.failed_jobs)
        elif key in agents.vanished and worker.alive:
            worker = replace(worker, alive=False, state=STALE_STATE)
        paired.append((worker, report))
    for identity, report in sorted(agents.live.items()):
        if identity not in matched and not _still_connecting(report):
            paired.append((agent_worker(report), report))
    return paired


CONNECT_GRACE_S = 30.0


def _still_connecting(report: AgentReport) -> bool:
    """A BullMQ worker's first reports, sent before its connections are open, cannot be matched to the
    reader's row yet: shown on their own they would list the worker twice."""
    return (report.library == "bullmq" and not report.client_ids
            and report.reported_at_s - report.started_at_s < CONNECT_GRACE_S)
