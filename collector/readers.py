"""Build the readers the settings ask for: every configured library on every configured Redis."""
from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from collector.bullmq_reader import BullMQReader
from collector.celery_reader import CeleryReader
from collector.alerting import redis_source
from collector.cluster import ClusterReader, DetectingReader, SentinelReader
from collector.connections import ClusterNode, connect, is_cluster, is_sentinel, one_slot, source_label
from collector.loop import Reader
from collector.rq_layout import RQLayout
from collector.rq_reader import RQReader
from config.settings import Settings, redacted
from core.problems import ProblemLog

log = logging.getLogger(__name__)


def redis_client(url: str) -> redis.Redis:
    """A client for one configured Redis (a Sentinel URL: its master); a malformed URL is a SettingsError."""
    return connect(url)


def close_readers(readers: list[Reader]) -> None:
    """Stop readers that hold resources (the Celery event listener)."""
    for reader in readers:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def _library_reader(settings: Settings, library: str, client: redis.Redis, *, node: bool = False,
                    owns: Callable[[str], bool] | None = None, problems: ProblemLog | None = None,
                    known: dict[str, set[str]] | None = None) -> Reader:
    """One library's reader over one plain Redis; `node`: a Redis Cluster master, whose snapshot is one
    transaction only when every key read shares one slot, and which reads the keys `owns` accepts (BullMQ
    queues `known` are shared by the masters' readers)."""
    if library == "rq":
        return RQReader(client, key_prefix=settings.rq_key_prefix, sample_jobs=settings.sample_jobs_per_cycle,
                        atomic=not node or one_slot([settings.rq_key_prefix]), problems=problems)
    if library == "bullmq":
        prefixes = [p.strip() for p in settings.bullmq_prefixes.split(",") if p.strip()] or ["bull"]
        return BullMQReader(client, prefixes=prefixes, sample_jobs=settings.sample_jobs_per_cycle,
                            atomic=not node or one_slot(prefixes), owns=owns, problems=problems,
                            known=known)
    queues = [q.strip() for q in settings.celery_queues.split(",") if q.strip()]
    return CeleryReader(client, queues=queues, sample_jobs=settings.sample_jobs_per_cycle)


def _cluster_reader(settings: Settings, library: str, client: redis.Redis) -> Reader:
    """One library's reader of a Redis Cluster: BullMQ on every master, RQ on the master of its queues set."""
    known: dict[str, set[str]] = {}

    def make(node: ClusterNode, owns: Callable[[str], bool], problems: ProblemLog) -> Reader:
        return _library_reader(settings, library, node.client, node=True, owns=owns, problems=problems,
                               known=known)

    home_key = RQLayout(settings.rq_key_prefix).queues_set if library == "rq" else None
    return ClusterReader(library, client, make, source=redis_source(client), home_key=home_key)


def _detecting_reader(settings: Settings, library: str, client: redis.Redis) -> Reader:
    """A reader that asks on its first cycle whether its Redis is a cluster node (Celery: always one Redis)."""
    if library == "celery":
        return _library_reader(settings, library, client)

    def build(cluster: bool) -> Reader:
        return _cluster_reader(settings, library, client) if cluster else _library_reader(settings, library, client)
    return DetectingReader(library, client, build, source=redis_source(client))


def _url_readers(settings: Settings, url: str) -> list[Reader]:
    """The readers of one configured URL, one per library."""
    client = connect(url)
    libraries = settings.library_names
    if is_sentinel(client):
        return [SentinelReader(_library_reader(settings, library, client), client, source=source_label(url))
                for library in libraries]
    try:
        cluster = is_cluster(client)
    except redis.RedisError as exc:
        log.debug("%s: not reachable (%s); whether it is a cluster node is asked on the first cycle",
                  redacted(url), exc)
        return [_detecting_reader(settings, library, client) for library in libraries]
    if not cluster:
        return [_library_reader(settings, library, client) for library in libraries]
    if "celery" in libraries:
        log.warning("%s is a Redis Cluster node: Celery queues are not read there (kombu's Redis transport does "
                    "not run on a cluster)", redacted(url))
    return [_cluster_reader(settings, library, client) for library in libraries if library != "celery"]


def build_readers(settings: Settings) -> list[Reader]:
    """Readers for every configured URL and library; a malformed URL is a SettingsError. Whether a URL names a
    Redis Cluster node is asked here (INFO), or on the first cycle that reaches it."""
    readers: list[Reader] = []
    for url in settings.redis_urls:
        readers += _url_readers(settings, url)
    return readers
