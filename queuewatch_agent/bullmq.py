"""BullMQ (the Python `bullmq` package): `monitored(worker)` or `MonitoredWorker(name, processor, opts)`.

The agent reports the process that runs the worker, as `<worker name or queue>:<first 8 hex digits of
worker.id>`. BullMQ keeps no worker registry; the collector's BullMQ reader finds workers by their Redis
connections (`<queue>#<client id>`), so the report carries the CLIENT IDs of the worker's own connections
(found once per connection in CLIENT LIST by their local addresses) for the collector to match them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from bullmq import Worker

from queuewatch_agent.agent import Agent, AgentConfig, client_from_url, client_like

log = logging.getLogger("queuewatch_agent")

LIBRARY = "bullmq"
_AGENT_ATTR = "_queuewatch_agent"
DEFAULT_CONNECTION = "redis://localhost:6379"


def agent_client(connection: Any) -> redis.Redis:
    """A sync client to the Redis of a BullMQ `connection` option (URL, dict or redis.asyncio client)."""
    if connection is None or connection == {}:
        return client_from_url(DEFAULT_CONNECTION)
    if isinstance(connection, str):
        return client_from_url(connection)
    if isinstance(connection, dict):
        skipped = ("single_connection_client", "decode_responses")
        options = {k: v for k, v in connection.items() if k not in skipped}
        return redis.Redis(**{"host": "localhost", "port": 6379, **options, "socket_timeout": 2.0,
                              "socket_connect_timeout": 2.0})
    return client_like(connection)


def worker_id_of(worker: Any) -> str:
    """`<name option or queue name>:<first 8 hex digits of worker.id>`."""
    name = (getattr(worker, "opts", None) or {}).get("name") or worker.name
    return f"{name}:{str(worker.id)[:8]}"


def local_addresses(worker: Any) -> frozenset[str]:
    """"ip:port" of the worker's own open Redis connections, as Redis lists them in CLIENT LIST `addr`."""
    found = set()
    for client in (getattr(worker, "client", None), getattr(worker, "bclient", None)):
        writer = getattr(getattr(client, "connection", None), "_writer", None)
        sockname = writer.get_extra_info("sockname") if writer is not None else None
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            host, port = sockname[0], sockname[1]
            found.update({f"{host}:{port}", f"[{host}]:{port}"} if ":" in str(host) else {f"{host}:{port}"})
    return frozenset(found)


def client_ids_finder(worker: Any, client: redis.Redis) -> Callable[[], tuple[int, ...]]:
    """A function giving the CLIENT IDs of the worker's connections (CLIENT LIST only when they change)."""
    known: dict[frozenset[str], tuple[int, ...]] = {}

    def client_ids() -> tuple[int, ...]:
        addresses = local_addresses(worker)
        if not addresses:
            return ()
        if addresses not in known:
            try:
                entries = client.client_list()
            except redis.RedisError:
                return ()
            known.clear()
            known[addresses] = tuple(sorted(int(e["id"]) for e in entries if e.get("addr") in addresses))
        return known[addresses]

    return client_ids


def _safe(action: Callable[[], None]) -> Callable[..., None]:
    def handler(*_: Any, **__: Any) -> None:
        try:
            action()
        except Exception as exc:
            log.warning("queuewatch agent event handler failed: %s", exc)
    return handler


def monitored(worker: Any, config: AgentConfig | None = None) -> Any:
    """Start reporting for a BullMQ worker (counts completed/failed events, stops on close); returns it."""
    try:
        config = config or AgentConfig.from_env()
        if not config.enabled:
            return worker
        if config.redis_url:
            client = client_from_url(config.redis_url)
        else:
            client = agent_client((getattr(worker, "opts", None) or {}).get("connection"))
        agent = Agent(LIBRARY, worker_id_of(worker), [worker.name], config=config, client=client,
                      state_fn=lambda: "busy" if getattr(worker, "jobs", None) else "idle",
                      client_ids_fn=client_ids_finder(worker, client))
        worker.on("completed", _safe(lambda: agent.record_job(failed=False)))
        worker.on("failed", _safe(lambda: agent.record_job(failed=True)))
        worker.on("closed", _safe(agent.stop))
        setattr(worker, _AGENT_ATTR, agent)
        agent.start()
    except Exception as exc:
        log.warning("queuewatch agent not started for BullMQ worker: %s", exc)
    return worker


class MonitoredWorker(Worker):
    """bullmq.Worker with the queuewatch agent (same arguments, plus `agent_config`)."""

    def __init__(self, name: str, processor: Any, opts: dict | None = None, *,
                 agent_config: AgentConfig | None = None) -> None:
        super().__init__(name, processor, opts or {})
        monitored(self, agent_config)
