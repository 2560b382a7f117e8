"""Collectors that share the Redis targets: who this collector is, its leases, and the one-collector rule of
SQLite.

On PostgreSQL every `queuewatch collect` with the same settings takes leases (storage.leases) on its fair
share of the configured Redis URLs, reads only those, and takes over the targets of a collector whose leases
expired. A lease lasts LEASE_INTERVALS collection intervals and is renewed by each cycle that reads its target,
so a collector killed with SIGKILL loses its targets within 1.5 intervals; the others look for expired leases
every PROBE_FRACTION of an interval. A SQLite file takes one collector: an exclusive lock on a file next to
it refuses a second one, and the sole collector holds every lease.
"""
from __future__ import annotations

import fcntl
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.backoff import backoff_s
from storage.engine import StorageError, error_text
from storage.leases import Member, acquire, release, renew

if TYPE_CHECKING:
    from collector.loop import Collector

log = logging.getLogger(__name__)

LEASE_INTERVALS = 1.5
PROBE_FRACTION = 0.25


class CollectorRefused(RuntimeError):
    """Another collector already collects into this SQLite file."""


def collector_member(configured_id: str | None = None) -> Member:
    """This process as a collector: QUEUEWATCH_COLLECTOR_ID, else hostname:pid."""
    hostname, pid = socket.gethostname(), os.getpid()
    return Member(configured_id or f"{hostname}:{pid}", hostname, pid)


def sqlite_lock(db_url: str) -> IO[str] | None:
    """For a SQLite file: hold `<file>.collector.lock` exclusively for the life of this process (the kernel
    releases it when the process dies, however). Raises CollectorRefused when another process holds it;
    returns None for other databases."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).expanduser().resolve()
    lock_path = path.with_name(path.name + ".collector.lock")
    try:
        handle = open(lock_path, "a+", encoding="utf-8")
    except PermissionError:  # a lock file left read-only still locks (its pid is then not written)
        handle = open(lock_path, "r", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise CollectorRefused(
            f"another collector ({holder}) already collects into {path}: a SQLite database takes one "
            "collector; stop that one first, or use PostgreSQL (--db postgresql://...) for collectors that "
            "share the work") from None
    if handle.writable():
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
    return handle


@dataclass
class Coordinator:
    """This collector's leases on the targets (Redis URLs as redis://host:port/db)."""

    engine: Engine
    member: Member
    targets: list[str]
    interval_s: float
    steal: bool = False  # one collector by construction (SQLite): take every lease whoever held it
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def lease_s(self) -> float:
        return LEASE_INTERVALS * self.interval_s

    def acquire(self) -> dict[str, float]:
        """Take free and expired leases up to this collector's share; returns the targets newly held, each
        with the seconds until it is due."""
        held = _guarded(acquire, self.engine, self.member, self.targets, self.lease_s, self.interval_s,
                        steal=self.steal)
        new = {t: lease.due_in_s for t, lease in held.items() if self.tokens.get(t) != lease.token}
        self.tokens = {t: lease.token for t, lease in held.items()}
        return new

    def renew(self, targets: set[str]) -> dict[str, int]:
        """Renew the leases of the targets about to be read; returns target -> token of those still held."""
        kept = _guarded(renew, self.engine, self.member, sorted(targets & set(self.tokens)), self.lease_s)
        for target in set(self.tokens) & targets - set(kept):
            del self.tokens[target]
        self.tokens.update(kept)
        return kept

    def release(self) -> None:
        """Give every lease back (a clean stop), so that the others need not wait for them to expire."""
        self.tokens = {}
        _guarded(release, self.engine, self.member)


def _guarded(operation, engine: Engine, *args, **kwargs):
    """A lease operation whose database errors are StorageErrors (the loop backs off and goes on)."""
    try:
        return operation(engine, *args, **kwargs)
    except SQLAlchemyError as exc:
        engine.dispose()  # the next try opens the database anew (a file opened read-only stays so while pooled)
        raise StorageError(f"collector leases: {error_text(exc)}") from exc


def run_shared(collector: "Collector", coordinator: Coordinator, stop: threading.Event, *, once: bool = False) -> int:
    """The loop of a collector that shares its targets: each held target is read once per interval on its own
    schedule (a target taken over is read at once), and expired leases are looked for every PROBE_FRACTION of
    an interval in between; leases are given back on a clean stop."""
    interval_s = collector.settings.interval_s
    due_s: dict[str, float] = {}  # target -> monotonic time its next read is due
    failures = 0
    try:
        while not stop.is_set():
            try:
                new = coordinator.acquire()
                now = time.monotonic()
                if new:
                    collector.load_history()  # what the previous holder stored is where this one goes on
                    due_s.update({t: now + due_in_s for t, due_in_s in new.items()})
                for target in set(due_s) - set(coordinator.tokens):
                    del due_s[target]
                due = {t for t in coordinator.tokens if once or due_s.get(t, now) <= now}
                result = None
                if due or once:
                    started = time.monotonic()
                    result = collector.run_cycle(due)
                    collector.purge_if_due()
                    failures = 0 if result.ok else failures + 1
                    wait_s = backoff_s(interval_s, failures, collector.settings.backoff_cap_s)
                    due_s.update({t: started + wait_s for t in due})
            except StorageError as exc:
                log.error("database error, cycle not stored (it will be counted next cycle): %s", exc)
                if once:
                    return 1
                failures += 1
                stop.wait(backoff_s(interval_s, failures, collector.settings.backoff_cap_s))
                continue
            if once:
                return 0 if result is not None and result.ok else 1
            next_due = min(due_s.values(), default=math.inf)
            probe_s = math.inf if coordinator.steal and due_s else PROBE_FRACTION * interval_s  # alone: no one to replace
            stop.wait(max(0.0, min(next_due - time.monotonic(), probe_s)))
        return 0
    finally:
        try:
            coordinator.release()
        except StorageError as exc:
            log.warning("leases not given back (they expire on their own): %s", exc)
