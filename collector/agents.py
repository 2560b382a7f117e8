"""Reading what worker agents (queuewatch_agent) publish: two round trips, no keyspace scan, no write.

1. ZRANGEBYSCORE of the index over entries that expire after now - INDEX_GRACE_S (bounded by `limit`);
2. MGET of those report keys (skipped when the index is empty).
An index entry whose key is gone is an agent that stopped reporting (its TTL ran out): it is `vanished`.
Reports pass through core.values: an index member that is not a usable key, or a report whose identity,
times or job counts are malformed, is skipped (reported once per key per hour); a malformed memory figure
leaves that report's memory unavailable.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import redis

from core.model import WorkerReading
from core.problems import ProblemLog
from core.values import (
    NAME_MAX,
    PID_MAX,
    as_float,
    as_int,
    as_name,
    as_text,
    duration_s,
    epoch_s,
    parse_json,
    size_mb,
)
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
MAX_QUEUES = 1_000
MAX_CLIENT_IDS = 64
PERCENTAGE_MAX = 1e6
AGENT_SOURCE = "agent"
STALE_STATE = "stale"
WorkerKey = tuple[str, str]  # (library, worker name / id)


@dataclass(frozen=True)
class AgentIndex:
    """Live reports by (library, worker id), and the identities whose reports expired."""

    live: dict[WorkerKey, AgentReport] = field(default_factory=dict)
    vanished: frozenset[WorkerKey] = frozenset()
    round_trips: int = 0


def read_agent_index(client: redis.Redis, now_s: float, *, prefix: str = DEFAULT_PREFIX,
                     limit: int = MAX_AGENTS, problems: ProblemLog | None = None) -> AgentIndex:
    """Every agent report that has not expired, and the agents that recently stopped reporting."""
    problems = problems or ProblemLog()
    index = index_key(prefix)
    members = client.zrangebyscore(index, now_s - INDEX_GRACE_S, "+inf", start=0, num=limit)
    keys: list[str] = []
    for member in members:
        key = as_name(member, NAME_MAX * 2 + len(prefix) + 16)
        if key is None or identity_of_key(key, prefix) is None:
            problems.report(index, f"member {as_text(member, 80)!r} is not a usable report key; skipped")
        else:
            keys.append(key)
    if not keys:
        return AgentIndex(round_trips=1)
    live: dict[WorkerKey, AgentReport] = {}
    vanished: set[WorkerKey] = set()
    for key, raw in zip(keys, client.mget(keys)):
        identity = identity_of_key(key, prefix)
        if identity is None or as_name(identity[1]) is None:
            problems.report(index, f"member {as_text(key, 80)!r} is not a usable report key; skipped")
            continue
        if raw is None:
            vanished.add(identity)
            continue
        report = problems.guard(key, "agent report", lambda key=key, raw=raw: parse_report(key, raw, problems))
        if report is not None:
            live[report.identity] = report
    return AgentIndex(live=live, vanished=frozenset(vanished - set(live)), round_trips=2)


def read_agents(client: redis.Redis, now_s: float, *,
                prefix: str = DEFAULT_PREFIX) -> dict[WorkerKey, AgentReport]:
    """Live agent reports by (library, worker id), in at most two round trips."""
    return read_agent_index(client, now_s, prefix=prefix).live


_MEMORY_REPORT_FIELDS = ("rss_mb", "heap_used_mb", "heap_total_mb", "external_mb", "array_buffers_mb",
                         "memory_limit_mb", "children_rss_mb")


def parse_report(key: str, raw: Any, problems: ProblemLog) -> AgentReport | None:
    """A published report through the parsing layer; None (reported) when it is not a usable report.

    Identity, times and job counts must be well formed or the report is skipped; a malformed memory figure
    makes the report's memory unavailable (all of it: the figures are read together).
    """
    data = parse_json(raw)
    if not isinstance(data, dict):
        problems.report(key, "not a JSON object of at most bounded size and depth; skipped")
        return None
    bad: list[str] = []

    def check(name: str, value: Any, required: bool = True) -> Any:
        if value is None and (required or data.get(name) is not None):
            bad.append(name)
        return value

    queues_raw = data.get("queues")
    queues = tuple(q for q in (as_name(q) for q in (queues_raw if isinstance(queues_raw, list) else [])
                               [:MAX_QUEUES]) if q)
    ids_raw = data.get("client_ids")
    client_ids = tuple(i for i in (as_int(i, low=0) for i in (ids_raw if isinstance(ids_raw, list) else [])
                                   [:MAX_CLIENT_IDS]) if i is not None)
    values: dict[str, Any] = {
        "library": check("library", as_name(data.get("library"), 16)),
        "worker_id": check("worker_id", as_name(data.get("worker_id"))),
        "queues": queues, "client_ids": client_ids,
        "pid": check("pid", as_int(data.get("pid"), low=1, high=PID_MAX)),
        "hostname": check("hostname", as_name(data.get("hostname"))),
        "started_at_s": check("started_at_s", epoch_s(data.get("started_at_s"))),
        "reported_at_s": check("reported_at_s", epoch_s(data.get("reported_at_s"))),
        "period_s": check("period_s", duration_s(data.get("period_s"))),
        "ttl_s": check("ttl_s", duration_s(data.get("ttl_s"))),
        "jobs_processed": check("jobs_processed", as_int(data.get("jobs_processed", 0))),
        "failed_jobs": check("failed_jobs", as_int(data.get("failed_jobs", 0))),
        "state": check("state", as_name(data.get("state", "idle"), 32)),
        "role": check("role", as_name(data.get("role", "worker"), 16)),
        "parent_id": check("parent_id", as_name(data.get("parent_id")), required=False),
    }
    if bad:
        problems.report(key, f"fields {', '.join(bad)} are not usable; the report is skipped")
        return None
    memory = {name: size_mb(data.get(name)) for name in _MEMORY_REPORT_FIELDS}
    memory["memory_percentage"] = as_float(data.get("memory_percentage"), low=0.0, high=PERCENTAGE_MAX)
    broken = [name for name, value in memory.items() if value is None and data.get(name) is not None]
    if broken:
        problems.report(key, f"memory fields {', '.join(broken)} are not usable; that memory is unavailable")
        memory = dict.fromkeys(memory)
    known = {f.name for f in fields(AgentReport)}
    version = as_int(data.get("version"))
    return AgentReport(**values, **{k: v for k, v in memory.items() if k in known},
                       **({"version": version} if version is not None else {}))


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
