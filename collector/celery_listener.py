"""The Celery event subscriber: a daemon thread that PSUBSCRIBEs to the event channels and feeds an EventState.

It only subscribes (no key is written, no queue declared or bound); a lost subscription is retried with a capped
backoff and counted in `gaps` (events published meanwhile are gone: Redis pub/sub keeps none).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from core.backoff import backoff_s
from collector.celery_events import EventState
from collector.celery_layout import decode_events, text
from core.problems import ProblemLog

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.25


class EventListener:
    """A daemon thread that PSUBSCRIBEs to Celery's event channels and folds every event into an EventState."""

    def __init__(self, client: redis.Redis, pattern: str, state: EventState, *,
                 clock: Callable[[], float] = time.time, poll_s: float = 0.5, retry_cap_s: float = 30.0,
                 problems: ProblemLog | None = None) -> None:
        self.client = client
        self.pattern = pattern
        self.state = state
        self.clock = clock
        self.poll_s = poll_s
        self.retry_cap_s = retry_cap_s
        self.problems = problems or ProblemLog()
        self.gaps = 0
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the subscriber thread (once)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="celery-events", daemon=True)
        self._thread.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Block until the subscription is confirmed by Redis."""
        return self._subscribed.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and release its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._thread = None
        self._subscribed.clear()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.psubscribe(self.pattern)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=self.poll_s)
                    if not message:
                        continue
                    kind = text(message.get("type"))
                    if kind == "psubscribe":
                        self._subscribed.set()
                        failures = 0
                    elif kind == "pmessage":
                        channel = message.get("channel")
                        self.problems.guard(channel, "event message",
                                            lambda: self._apply_all(channel, message.get("data")))
            except (redis.RedisError, OSError) as exc:
                self._subscribed.clear()
                failures += 1
                self.gaps += 1
                log.warning("celery event subscription lost (%s); retrying", exc)
                self._stop.wait(backoff_s(RETRY_BASE_S, failures, self.retry_cap_s))
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass

    def _apply_all(self, channel: Any, data: Any) -> None:
        """Fold every event of one published message; an event that cannot be used is skipped and reported."""
        now_s = self.clock()
        for event in decode_events(data):
            self._apply(event, now_s, channel)

    def _apply(self, event: Mapping[str, Any], now_s: float, channel: Any = "celery event") -> None:
        try:
            self.state.apply(event, now_s)
        except (TypeError, ValueError, AttributeError) as exc:
            self.problems.report(channel, f"event {text(event.get('type'))[:40]!r} skipped: {exc}")
