"""Readers over a configured URL that is more than one plain Redis: every master of a Redis Cluster, or the
master a Sentinel names now.

Redis Cluster. Each cycle first reads the slot map (one CLUSTER SLOTS round trip, to the configured node or,
when it is down, to any master known from the last map), then runs one plain reader per master, each asking
only for keys that master serves, and merges their readings into one: every queue appears once, and the round
trips are one plus a constant per master. A master that joins gets a reader; one that leaves loses its
reader. While slots migrate, a key the map placed wrongly answers MOVED/ASK: that figure is reported as a
problem and unavailable for the cycle, and the next cycle reads the refreshed map. A master that cannot be
reached fails the whole URL's reading (one Redis outage alert per configured URL).

Sentinel. Before each cycle the sentinels are asked where the master is (redis-py drops idle connections to a
former master), so the cycle after a failover reads the new master.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis

from collector.connections import ClusterNode, cluster_masters, follow_master, is_cluster
from collector.loop import Reader
from core.model import Cursor, RedisReading
from core.problems import ProblemLog, shown_key

NodeReaderFactory = Callable[[ClusterNode, Callable[[str], bool], ProblemLog], Reader]
"""Builds the reader of one master, given that master, a test of which keys it serves and its problem log."""
REDIRECTS = ("MovedError", "AskError")


class ClusterProblems(ProblemLog):
    """A master's problem log that names a MOVED/ASK reply (slots moving between masters) for what it is."""

    def __init__(self) -> None:
        super().__init__()
        self._redirects: set[str] = set()

    def report(self, key: Any, what: str) -> bool:
        if what.startswith(REDIRECTS):
            self.reported += 1
            if what in self._redirects or len(self._redirects) >= self.max_keys:  # one line per slot and target
                return False
            self._redirects.add(what)
            self.logger.warning("Redis Cluster slot of %s is moving between masters (%s); its figures are "
                                "blank this cycle, the next cycle reads the new slot map", shown_key(key), what)
            return True
        return super().report(key, what)


class ClusterReader:
    """One library's reader over every master of a Redis Cluster: one reading per cycle, each queue once."""

    def __init__(self, library: str, seed: redis.Redis, make_reader: NodeReaderFactory, *, source: str,
                 home_key: str | None = None) -> None:
        self.library = library
        self.client = seed
        self.source = source
        self.make_reader = make_reader
        self.home_key = home_key
        """Read only the master serving this key (a library whose keys share one hash tag), else every master."""
        self.nodes: dict[str, ClusterNode] = {}
        self.readers: dict[str, Reader] = {}

    def read(self, cursors: Mapping[str, Cursor], *, unseen: Cursor = Cursor()) -> RedisReading:
        """One cycle on every master; the slot map is read first."""
        self.nodes = {node.address: node for node in self._masters()}
        wanted = [node for node in self.nodes.values() if self.home_key is None or node.owns(self.home_key)]
        if not wanted:
            raise redis.ConnectionError(f"no master of the cluster at {self.source} serves "
                                        f"{'slot of ' + self.home_key if self.home_key else 'any slot'}")
        for address in set(self.readers) - {node.address for node in wanted}:
            _close(self.readers.pop(address))
        readings = []
        for node in wanted:
            reader = self.readers.get(node.address)
            if reader is None:
                reader = self.readers[node.address] = self.make_reader(node, self._owner_test(node.address),
                                                                       ClusterProblems())
            readings.append(reader.read(cursors, unseen=unseen))
        return merge(readings, extra_round_trips=1)

    def close(self) -> None:
        for reader in self.readers.values():
            _close(reader)
        self.readers.clear()

    def _owner_test(self, address: str) -> Callable[[str], bool]:
        """Whether a key is served by the master at `address`, by the newest slot map."""
        def owns(key: str) -> bool:
            node = self.nodes.get(address)
            return node is not None and node.owns(key)
        return owns

    def _masters(self) -> list[ClusterNode]:
        """The slot map from the configured node, else from any master of the last map."""
        seeds = [self.client] + [node.client for node in self.nodes.values()]
        error: redis.RedisError | None = None
        for seed in seeds:
            try:
                return cluster_masters(seed, self.nodes)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                error = error or exc
        assert error is not None
        raise error


class SentinelReader:
    """A reader of a Sentinel-managed master that asks the sentinels where the master is before each cycle."""

    def __init__(self, reader: Reader, client: redis.Redis, *, source: str) -> None:
        self.reader = reader
        self.library = reader.library
        self.client = client
        self.source = source

    def read(self, cursors: Mapping[str, Cursor], *, unseen: Cursor = Cursor()) -> RedisReading:
        follow_master(self.client)
        return self.reader.read(cursors, unseen=unseen)

    def close(self) -> None:
        _close(self.reader)


class DetectingReader:
    """A reader of a URL whose Redis could not be asked at start whether it is a cluster node: it asks on its
    first cycle that reaches it, then builds the reader that fits."""

    def __init__(self, library: str, client: redis.Redis, build: Callable[[bool], Reader], *, source: str) -> None:
        self.library = library
        self.client = client
        self.source = source
        self.build = build
        self.reader: Reader | None = None

    def read(self, cursors: Mapping[str, Cursor], *, unseen: Cursor = Cursor()) -> RedisReading:
        if self.reader is None:
            self.reader = self.build(is_cluster(self.client))
        return self.reader.read(cursors, unseen=unseen)

    def close(self) -> None:
        _close(self.reader)


def merge(readings: list[RedisReading], *, extra_round_trips: int = 0) -> RedisReading:
    """One reading of several masters' readings: queues (the first of each name), workers, round trips."""
    seen: set[str] = set()
    queues = []
    for reading in readings:
        for queue in reading.queues:
            if queue.queue_name not in seen:
                seen.add(queue.queue_name)
                queues.append(queue)
    unavailable = frozenset().union(*(reading.unavailable for reading in readings))
    return RedisReading(
        read_at_s=max((reading.read_at_s for reading in readings), default=0.0), queues=queues,
        workers=[worker for reading in readings for worker in reading.workers],
        round_trips=extra_round_trips + sum(reading.round_trips for reading in readings),
        unavailable=unavailable, workers_known=all(reading.workers_known for reading in readings))


def _close(reader: object) -> None:
    close = getattr(reader, "close", None)
    if close is not None:
        close()
