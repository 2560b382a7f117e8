"""Build the readers the settings ask for: every configured library on every configured Redis."""
from __future__ import annotations

import redis

from collector.bullmq_reader import BullMQReader
from collector.celery_reader import CeleryReader
from collector.loop import Reader
from collector.rq_reader import RQReader
from config.settings import Settings, SettingsError, redacted

SOCKET_TIMEOUT_S = 10.0


def redis_client(url: str) -> redis.Redis:
    """A client for one configured Redis; a malformed URL is a SettingsError."""
    try:
        return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=5)
    except ValueError as exc:
        raise SettingsError(f"bad Redis URL {redacted(url)}: {exc}") from exc


def close_readers(readers: list[Reader]) -> None:
    """Stop readers that hold resources (the Celery event listener)."""
    for reader in readers:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def build_readers(settings: Settings) -> list[Reader]:
    readers: list[Reader] = []
    for url in settings.redis_urls:
        client = redis_client(url)
        for library in settings.library_names:
            if library == "rq":
                readers.append(RQReader(client, key_prefix=settings.rq_key_prefix,
                                        sample_jobs=settings.sample_jobs_per_cycle))
            elif library == "bullmq":
                prefixes = [p.strip() for p in settings.bullmq_prefixes.split(",") if p.strip()] or ["bull"]
                readers.append(BullMQReader(client, prefixes=prefixes, sample_jobs=settings.sample_jobs_per_cycle))
            elif library == "celery":
                queues = [q.strip() for q in settings.celery_queues.split(",") if q.strip()]
                readers.append(CeleryReader(client, queues=queues, sample_jobs=settings.sample_jobs_per_cycle))
    return readers
