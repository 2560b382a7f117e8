"""Responses that depend only on the newest stored cycle, computed once per cycle and shared by all requests.

Each request reads a cheap stamp: the newest cycle's id (a failed cycle counts: it can make data stale) and
the newest alert event's id (an acknowledgement changes alert figures between cycles). An answer computed
under the same stamp, and no older than `max_age_s` (figures call a queue current by the clock), is served
as it is. Concurrent requests for the same answer wait for one computation (a lock per answer, never one for
the whole cache), or, for answers marked stale_ok, get the previous cycle's answer meanwhile; an error is not
cached.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from sqlalchemy import Engine

from storage.status import answer_stamp

MAX_AGE_S = 5.0
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Stamp:
    """What the cached answers were computed from."""

    cycle_id: int | None
    alert_event_id: int
    redis_down: bool
    last_ok_at_s: float | None


@dataclass(frozen=True)
class _Entry:
    stamp: Stamp
    computed_at_s: float
    value: Any


class CycleCache:
    """Answers keyed by name, valid while the stamp is unchanged and for at most `max_age_s`."""

    def __init__(self, engine: Engine, *, max_age_s: float = MAX_AGE_S, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()  # held only to look up or replace dictionary items
        self.computed = 0  # answers computed (not served from the cache), for tests and benchmarks

    def stamp(self) -> Stamp:
        """The newest cycle and alert event as stored now (indexed look-ups in one statement)."""
        figures = answer_stamp(self.engine)
        return Stamp(figures["cycle_id"], figures["alert_event_id"], figures["redis_down"],
                     figures["last_ok_at_s"])

    def _fresh(self, key: Hashable, stamp: Stamp) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.stamp == stamp and self.clock() - entry.computed_at_s < self.max_age_s:
            return entry
        return None

    def _lock_of(self, key: Hashable) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                if len(self._locks) >= self.max_entries:
                    self._locks = {k: v for k, v in self._locks.items() if v.locked()}
                lock = self._locks[key] = threading.Lock()
            return lock

    def get(self, key: Hashable, stamp: Stamp, compute: Callable[[], Any], *, stale_ok: bool = False) -> Any:
        """The answer for `key` under `stamp`, computed by `compute` when none is fresh.

        With `stale_ok`, while another request computes the new answer the previous one is served at once
        instead of holding this request's thread (for answers over the whole history, slow to compute).
        """
        entry = self._fresh(key, stamp)
        if entry is not None:
            return entry.value
        lock = self._lock_of(key)
        previous = self._entries.get(key)
        if stale_ok and previous is not None:
            if not lock.acquire(blocking=False):
                return previous.value
        else:
            lock.acquire()
        try:
            entry = self._fresh(key, stamp)
            if entry is not None:
                return entry.value
            value = compute()
            with self._guard:
                if len(self._entries) >= self.max_entries:
                    self._entries = {k: e for k, e in self._entries.items() if e.stamp == stamp}
                self._entries[key] = _Entry(stamp, self.clock(), value)
                self.computed += 1
            return value
        finally:
            lock.release()
