"""BullMQ discovery: which queues exist and which workers are connected (round trip 1 of BullMQReader).

Discovery cost. BullMQ keeps no queue registry: a queue is a `<prefix>:<queue>:meta` hash (written by every
add and every finish). Only the first read() scans the whole keyspace (ceil(keys / scan_count) round trips,
O(all keys) on the server); later cycles advance the same SCAN by one step each, so a full pass is spread over
about keys / scan_count cycles and a queue created meanwhile appears within two passes, or at once when a
worker connection names it in CLIENT LIST. Passing `queues=` turns scanning off. A known queue whose `:meta` hash is
gone (obliterated) is dropped; a `:meta` key that is a job hash (a job id ending in ":meta") is ignored.

Workers: BullMQ has no worker registry. CLIENT LIST names Node workers `<prefix>:<base64(queue)>[:w:<name>]`
(one connection) and Python workers `<prefix>:<queue>[:w:<name>]` (two connections, paired by client id).
Each worker is reported alive with pid None, its host from the client address (loopback: this host), state
"idle" while it blocks waiting for jobs, else "busy", and no job counts (BullMQ keeps none per worker).

On a Redis Cluster node, `owns` keeps only the queues whose `:meta` key (and with a `{hash tag}` prefix or
queue name, every key of the queue) lives on that node: the others are read by their own node's reader. A
worker's ioredis Cluster client names its connections to other masters too; only the connections on the master
of its queue (where its blocking connection waits) are counted, so each worker is listed once.

The first prefix's queues are reported by name; queues of further prefixes as `<prefix>:<name>`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from collector.bullmq_layout import (
    LOOPBACK_HOSTS,
    BullMQLayout,
    WorkerClient,
    client_host,
    parse_int,
    text,
    worker_client,
)
from core.model import WorkerReading
from core.problems import ProblemLog
from core.values import NAME_MAX, as_name, as_text

LIBRARY = "bullmq"


@dataclass(frozen=True)
class QueueRef:
    """One queue: the name it is reported under, its BullMQ name and its prefix's layout."""

    name: str
    queue: str
    layout: BullMQLayout

    def key(self, suffix: str) -> str:
        return self.layout.key(self.queue, suffix)


class BullMQDiscovery:
    """Queues known under each prefix, the incremental SCAN over `:meta` hashes, and worker connections."""

    def __init__(self, client: redis.Redis, layouts: Sequence[BullMQLayout], *, queues: Sequence[str] | None,
                 scan_count: int, hostname: str, problems: ProblemLog | None = None,
                 owns: Callable[[str], bool] | None = None, known: dict[str, set[str]] | None = None) -> None:
        self.client = client
        self.owns = owns
        self.layouts = list(layouts)
        self.fixed_queues = list(queues) if queues is not None else None
        self.scan_count = scan_count
        self.hostname = hostname
        self.problems = problems or ProblemLog()
        self.known: dict[str, set[str]] = known if known is not None else {}
        """Queues known per prefix; the readers of a cluster's masters share one, so a queue whose slot moves
        is read by its new master on the next cycle, before that master's scan reaches it."""
        for layout in self.layouts:
            self.known.setdefault(layout.prefix, set()).update(self.fixed_queues or ())
        self._scan_cursors: dict[str, int] | None = None

    @property
    def full_scan_due(self) -> bool:
        """Whether the next cycle must first scan the whole keyspace (first read, scanning on)."""
        return self._scan_cursors is None and self.fixed_queues is None

    def full_scan(self) -> None:
        """Every `:meta` hash under every prefix (first read only: O(all keys))."""
        for layout in self.layouts:
            cursor = 0
            while True:
                cursor, keys = self.client.scan(cursor, match=layout.meta_pattern, count=self.scan_count,
                                                _type="hash")
                self._learn(layout, keys)
                if int(cursor) == 0:
                    break
        self._scan_cursors = {layout.prefix: 0 for layout in self.layouts}

    def _learn(self, layout: BullMQLayout, meta_keys: Sequence[Any]) -> None:
        for key in meta_keys:
            queue = layout.queue_of_meta_key(as_name(key, NAME_MAX * 2) or "")
            if queue and as_name(queue):
                self.known[layout.prefix].add(queue)
            else:
                self.problems.report(key, f"not a usable queue (at most {NAME_MAX} characters of UTF-8 without "
                                     "NUL); skipped")

    def discover(self) -> list[dict[str, Any]]:
        """Round trip 1: CLIENT LIST and one SCAN step per prefix."""
        pipe = self.client.pipeline(transaction=False)
        pipe.client_list()
        scanning = self.fixed_queues is None and self._scan_cursors is not None
        if scanning:
            for layout in self.layouts:
                pipe.scan(self._scan_cursors[layout.prefix], match=layout.meta_pattern, count=self.scan_count,
                          _type="hash")
        replies = pipe.execute(raise_on_error=False)
        if scanning:
            for layout, reply in zip(self.layouts, replies[1:]):
                cursor, keys = _ok(reply, (0, []))
                self._scan_cursors[layout.prefix] = int(cursor)
                self._learn(layout, keys)
        return [entry for entry in _ok(replies[0], []) if isinstance(entry, dict)]

    def refs(self, clients: Sequence[dict[str, Any]]) -> list[QueueRef]:
        """Known queues plus queues named by worker connections (kept only if their `:meta` exists)."""
        names = {layout.prefix: set(self.known[layout.prefix]) for layout in self.layouts}
        if self.fixed_queues is None:
            for entry in clients:
                found = self._worker_client(entry)
                if found and as_name(found[1].queue):
                    names[found[0].prefix].add(found[1].queue)
        first = self.layouts[0].prefix
        refs = [QueueRef(queue if layout.prefix == first else f"{layout.prefix}:{queue}", queue, layout)
                for layout in self.layouts for queue in sorted(names[layout.prefix])]
        return refs if self.owns is None else [ref for ref in refs if self.owns(ref.key("meta"))]

    def keep(self, ref: QueueRef, *, exists: bool, is_job_hash: bool) -> bool:
        """Whether a snapshot is a live queue; forgets gone queues and job hashes that looked like `:meta`."""
        if self.fixed_queues is not None:
            return True
        if exists and not is_job_hash:
            self.known[ref.layout.prefix].add(ref.queue)
            return True
        self.known[ref.layout.prefix].discard(ref.queue)
        return False

    def _worker_client(self, entry: Mapping[str, Any]) -> tuple[BullMQLayout, WorkerClient] | None:
        name = text(entry.get("name")) or ""
        for layout in self.layouts:
            found = worker_client(name, layout.prefix, self.known[layout.prefix])
            if found and (self.owns is None or self.owns(layout.key(found.queue, "meta"))):
                return layout, found
        return None

    def workers(self, clients: Sequence[Mapping[str, Any]], read_at_s: float) -> list[WorkerReading]:
        """One reading per worker: Node workers name one connection, Python workers two (paired by id)."""
        groups: dict[tuple[str, str, str | None, str | None, str], list[Mapping[str, Any]]] = {}
        for entry in clients:
            found = self._worker_client(entry)
            if found:
                layout, worker = found
                host = client_host(text(entry.get("addr")))
                key = (layout.prefix, worker.queue, worker.worker_name, host, worker.flavor)
                groups.setdefault(key, []).append(entry)
        first = self.layouts[0].prefix
        workers = []
        for (prefix, queue, worker_name, host, flavor), entries in sorted(groups.items(), key=str):
            entries = sorted(entries, key=lambda e: parse_int(e.get("id")) or 0)
            size = 2 if flavor == "python" else 1
            queue_name = queue if prefix == first else f"{prefix}:{queue}"
            label = f"{queue_name}:w:{worker_name}" if worker_name else queue_name
            for index in range(0, len(entries), size):
                group = entries[index:index + size]
                name = as_name(f"{label}#{text(group[0].get('id'))}")
                if name is None or as_name(queue_name) is None:
                    self.problems.report(f"CLIENT LIST name {as_text(group[0].get('name'), 80)!r}",
                                         "not a usable worker or queue name; the connection is not listed")
                    continue
                ages = [parse_int(e.get("age")) or 0 for e in group]
                idles = [parse_int(e.get("idle")) or 0 for e in group]
                blocked = any("b" in (text(e.get("flags")) or "") for e in group)
                workers.append(WorkerReading(
                    name=name, library=LIBRARY, queues=[queue_name], pid=None,
                    hostname=self.hostname if host in LOOPBACK_HOSTS else as_name(host),
                    state="idle" if blocked else "busy", alive=True, successful_jobs=0, failed_jobs=0,
                    birth_at_s=read_at_s - max(ages), last_heartbeat_at_s=read_at_s - min(idles)))
        return workers


def _ok(reply: Any, default: Any) -> Any:
    """A pipeline reply, or the default when the command failed (e.g. a key of the wrong type)."""
    return default if isinstance(reply, Exception) or reply is None else reply
