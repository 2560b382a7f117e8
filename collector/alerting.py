"""A cycle's alert planning: Redis system alerts first, then queue alerts of the Redis that can be read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from core import alert_rules as rules
from core.system_alerts import SYSTEM_TYPES, SystemAlertType, redis_breach


def redis_source(client: Any) -> str:
    """The Redis a reader reads, as redis://host:port/db (never with user or password), or '?'."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    if "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return "?"


def reader_source(reader: Any) -> str:
    """The configured Redis a reader reads, as alerts name it: its `source` (a cluster or Sentinel URL without
    password) or else its client's address (see redis_source)."""
    return getattr(reader, "source", None) or redis_source(getattr(reader, "client", None))


@dataclass
class CycleAlerts:
    """What a cycle knows for alerting: queue breaches, which Redis each queue came from, which Redis failed."""

    now_s: float
    timings: rules.AlertTimings
    breaches: dict[str, list] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    source_of_queue: dict[str, str] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)  # every Redis this collector reads
    failed: dict[str, int] = field(default_factory=dict)  # Redis that failed: failed cycles in a row
    some_reader_failed: bool = False
    queue_targets: dict[str, str] = field(default_factory=dict)  # queue -> its Redis, from earlier cycles
    accepted: set[str] | None = None  # shared collectors: the Redis whose leases the write confirmed

    def _owned(self) -> tuple[set[str], dict[str, list], set[str] | None]:
        """Sources, breaches and queue scopes this collector may plan: with shared collectors, only those
        of the Redis it still holds (the others' alerts and timers are theirs)."""
        if self.accepted is None:
            return self.sources, self.breaches, None
        breaches = {queue: found for queue, found in self.breaches.items()
                    if self.source_of_queue.get(queue) in self.accepted}
        scopes = {queue for queue, source in self.queue_targets.items() if source in self.accepted} | set(breaches)
        return self.sources & self.accepted, breaches, scopes

    def plan(self, open_rows: list, states: list) -> rules.Plan:
        """Redis alerts of this collector's Redis URLs, then queue alerts; a queue's alerts are neither
        opened nor resolved while its Redis's alert fires (its timers wait too)."""
        sources, breaches, scopes = self._owned()
        redis_type = SystemAlertType.REDIS_UNREACHABLE.value
        redis_open = [a for a in open_rows if a.alert_type == redis_type and a.queue_name in sources]
        redis_states = [s for s in states if s.alert_type == redis_type]
        system = rules.plan_cycle(
            redis_open, {url: [redis_breach(self.failed[url])] if url in self.failed else [] for url in sources},
            self.now_s, states=redis_states, timings=rules.AlertTimings(self.timings.default),
            resolve_unseen=False, scopes=sources)
        firing = {a.queue_name for a in redis_open}
        firing -= {c.queue_name for c in system.changes if c.kind == "resolved"}
        firing |= {c.queue_name for c in system.changes if c.kind == "opened"}
        judged = {queue: found for queue, found in breaches.items()
                  if self.source_of_queue.get(queue) not in firing}
        queues = rules.plan_cycle(
            [a for a in open_rows if a.alert_type not in SYSTEM_TYPES], judged, self.now_s,
            states=[s for s in states if s.alert_type not in SYSTEM_TYPES], timings=self.timings,
            resolve_unseen=not self.some_reader_failed and not firing, libraries=self.libraries, scopes=scopes)
        return rules.Plan(system.changes + queues.changes, {**system.states, **queues.states})


def consecutive(previous: Mapping[str, int], failed_now: set[str]) -> dict[str, int]:
    """Failed cycles in a row per Redis, after this cycle."""
    return {url: previous.get(url, 0) + 1 for url in failed_now}
