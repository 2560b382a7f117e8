"""Webhook notifications: a JSON POST per alert that opens, escalates or is acknowledged.

Deliveries follow the stored alert event feed in order, from a cursor kept in the database, so an
acknowledgement made in the dashboard or the API is sent as well, and nothing is lost across restarts.
A failed POST is retried with exponential backoff (capped); after `max_attempts` the event is logged as
undeliverable and skipped so that later alerts still go out.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Engine

from storage.alert_feed import FeedItem, delivery_cursor, events_after, newest_event_id, set_delivery_cursor

log = logging.getLogger(__name__)

CONSUMER = "webhook"
EVENT_NAMES = {"opened": "alert:created", "escalated": "alert:escalated", "acknowledged": "alert:acknowledged"}

Poster = Callable[[str, bytes, float], int]


def post_json(url: str, body: bytes, timeout_s: float) -> int:
    """POST `body` as JSON; returns the HTTP status (raises OSError on network failure)."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "queuewatch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def payload(item: FeedItem, now_s: float) -> bytes:
    sent_at = datetime.fromtimestamp(now_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"event": EVENT_NAMES[item.change], "change": item.change, "alert": item.alert,
                       "sentAt": sent_at}).encode()


class WebhookNotifier:
    """Sends pending alert events to one URL, in order, with capped exponential backoff."""

    def __init__(self, engine: Engine, url: str, *, timeout_s: float = 5.0, max_attempts: int = 8,
                 backoff_base_s: float = 1.0, backoff_cap_s: float = 300.0, post: Poster = post_json,
                 clock: Callable[[], float] = time.time):
        self.engine = engine
        self.url = url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.post = post
        self.clock = clock
        self.attempts = 0
        self.next_attempt_at_s = 0.0
        if delivery_cursor(engine, CONSUMER) is None:  # first start: notify from now on, not the whole history
            set_delivery_cursor(engine, CONSUMER, newest_event_id(engine))

    def deliver_pending(self) -> int:
        """Try to send every pending event; returns how many were delivered."""
        if self.clock() < self.next_attempt_at_s:
            return 0
        delivered = 0
        cursor = delivery_cursor(self.engine, CONSUMER) or 0
        for item in events_after(self.engine, cursor, EVENT_NAMES):
            if not self._send(item):
                return delivered
            set_delivery_cursor(self.engine, CONSUMER, item.event_id)
            delivered += 1
        return delivered

    def _send(self, item: FeedItem) -> bool:
        now_s = self.clock()
        try:
            status = self.post(self.url, payload(item, now_s), self.timeout_s)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except OSError as exc:
            error = str(exc)
        if error is None:
            self.attempts, self.next_attempt_at_s = 0, 0.0
            return True
        self.attempts += 1
        if self.attempts >= self.max_attempts:
            log.error("webhook gave up on %s %s after %d attempts: %s", item.change, item.alert["id"],
                      self.attempts, error)
            self.attempts, self.next_attempt_at_s = 0, 0.0
            return True  # skipped: later alerts must still go out
        wait_s = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (self.attempts - 1))
        self.next_attempt_at_s = now_s + wait_s
        log.warning("webhook delivery of %s failed (%s); retry %d in %.0f s", item.alert["id"], error,
                    self.attempts, wait_s)
        return False

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.deliver_pending()
            except Exception:  # noqa: BLE001 - a notifier thread must outlive database hiccups
                log.exception("webhook notifier error")
            stop.wait(poll_s)
