"""Notifications: one thread per channel follows the alert event feed from its own stored cursor.

A feed event is delivered at most once per channel across restarts: the delivered row of the delivery log and
the channel's cursor are written in one transaction. A failed delivery is retried with capped exponential
backoff (the channel waits, later events queue behind it, other channels go on); after `max_attempts`, or
on an answer that will not change (HTTP 4xx, SMTP 5xx), it is logged as failed and skipped. Alerts still
firing and unacknowledged are repeated every `repeat_interval_s`. Silenced alerts are never sent.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Sequence

from sqlalchemy import Engine

from collector.notify_formats import Notification
from collector.webhooks import DeliveryError, scrub, send
from config.notify import ChannelConfig
from core.backoff import backoff_s
from core.notify import FEED_EVENTS, REPEAT, AlertState, repeat_due, should_send
from storage.leases import one_at_a_time
from storage.alert_feed import FeedItem, delivery_cursor, events_after, newest_event_id, set_delivery_cursor
from storage.notify_log import (
    Attempt, Pending, alert_rows, last_announced, open_announced, optional_alert_columns, pending_row,
    queue_libraries, record_attempt,
)
from storage.queries_alerts import alert_dict

log = logging.getLogger(__name__)

Sender = Callable[[ChannelConfig, Notification, float], None]
LIBRARY_CACHE_S = 600.0


def alert_state(row: dict[str, Any]) -> AlertState:
    """The flags of an alerts row; the silence and snooze columns count only where the schema has them."""
    return AlertState(resolved=row.get("resolved_at_s") is not None, acknowledged=bool(row.get("acknowledged")),
                      silenced=row.get("silenced_by") is not None, snoozed_until_s=row.get("acknowledged_until_s"))


class ChannelNotifier:
    """Delivers one channel's notifications; `step()` does one bounded pass, `run()` loops until stopped."""

    def __init__(self, engine: Engine, channel: ChannelConfig, *, sender: Sender = send,
                 clock: Callable[[], float] = time.time, optional_columns: tuple[str, ...] | None = None):
        self.engine = engine
        self.channel = channel
        self.sender = sender
        self.clock = clock
        self.optional_columns = optional_alert_columns(engine) if optional_columns is None else optional_columns
        self.next_attempt_at_s = 0.0
        self._pending: dict[tuple[str, str, int | None], Pending] = {}
        self._libraries: dict[str, tuple[float, tuple[str, ...]]] = {}
        if delivery_cursor(engine, channel.cursor_name) is None:  # a new channel: from now on, not the history
            set_delivery_cursor(engine, channel.cursor_name, newest_event_id(engine))

    def step(self) -> int:
        """Send what is due (feed events in order, then repeats); returns how many were delivered. Of several
        collectors sharing a PostgreSQL, one at a time sends a channel's notifications (so each goes once)."""
        if self.clock() < self.next_attempt_at_s:
            return 0
        with one_at_a_time(self.engine, f"notify:{self.channel.name}") as mine:
            return self._step() if mine else 0

    def _step(self) -> int:
        delivered = 0
        cursor = delivery_cursor(self.engine, self.channel.cursor_name) or 0
        items = events_after(self.engine, cursor, FEED_EVENTS)
        rows = alert_rows(self.engine, {item.alert["id"] for item in items}, self.optional_columns)
        for item in items:
            outcome = self._feed_event(item, rows.get(item.alert["id"]))
            if outcome is None:
                return delivered
            delivered += outcome
        for alert_id, last_at_s in open_announced(self.engine, self.channel.name).items():
            outcome = self._repeat(alert_id, last_at_s)
            if outcome is None:
                return delivered
            delivered += outcome
        return delivered

    def _libraries_of(self, queue_name: str, row: dict[str, Any] | None) -> tuple[str, ...]:
        if row is not None and row.get("library"):
            return (str(row["library"]),)
        now_s = self.clock()
        cached = self._libraries.get(queue_name)
        if cached is None or now_s - cached[0] > LIBRARY_CACHE_S:
            cached = (now_s, tuple(sorted(queue_libraries(self.engine, queue_name))))
            self._libraries[queue_name] = cached
        return cached[1]

    def _feed_event(self, item: FeedItem, row: dict[str, Any] | None) -> int | None:
        """1 delivered, 0 skipped (cursor moved on), None when the channel must wait (retrying)."""
        cursor = (self.channel.cursor_name, item.event_id)
        severity = item.severity or item.alert["severity"]
        libraries = self._libraries_of(item.alert["queueName"], row)
        route_ok = self.channel.route.matches(severity, item.alert["queueName"], libraries)
        state = alert_state(row or {})
        announced = item.change not in ("acknowledged", "resolved") or \
            bool(last_announced(self.engine, self.channel.name, [item.alert["id"]]))
        if not should_send(item.change, route_ok, state, announced):
            set_delivery_cursor(self.engine, *cursor)
            return 0
        note = Notification(item.change, item.alert, severity, libraries, item.event_id)
        return self._deliver(note, cursor)

    def _repeat(self, alert_id: str, last_at_s: float) -> int | None:
        row = alert_rows(self.engine, [alert_id], self.optional_columns).get(alert_id)
        if row is None:
            return 0
        alert = alert_dict(row)
        libraries = self._libraries_of(alert["queueName"], row)
        route_ok = self.channel.route.matches(alert["severity"], alert["queueName"], libraries)
        if not repeat_due(alert_state(row), route_ok, last_at_s, self.clock(), self.channel.repeat_interval_s):
            return 0
        return self._deliver(Notification(REPEAT, alert, alert["severity"], libraries, None), None)

    def _deliver(self, note: Notification, cursor: tuple[str, int] | None) -> int | None:
        key = (note.alert["id"], note.change, note.feed_event_id)
        pending = self._pending.get(key) or pending_row(self.engine, self.channel.name, *key)
        now_s = self.clock()
        try:
            self.sender(self.channel, note, now_s)
        except DeliveryError as exc:
            return self._failed(note, key, pending, cursor, now_s, exc)
        record_attempt(self.engine, Attempt(self.channel.name, *key, now_s, None, True), pending, cursor)
        self._pending.pop(key, None)
        self.next_attempt_at_s = 0.0
        return 1

    def _failed(self, note: Notification, key: tuple[str, str, int | None], pending: Pending | None,
                cursor: tuple[str, int] | None, now_s: float, exc: DeliveryError) -> int | None:
        error = scrub(str(exc), self.channel.secrets())
        attempts = (pending.attempts if pending else 0) + 1
        final = not exc.retryable or attempts >= self.channel.max_attempts
        wait_s = backoff_s(self.channel.retry_base_s, attempts - 1, self.channel.retry_cap_s)
        attempt = Attempt(self.channel.name, *key, now_s, error, final, None if final else now_s + wait_s)
        pending = record_attempt(self.engine, attempt, pending, cursor if final else None)
        if final:
            self._pending.pop(key, None)
            self.next_attempt_at_s = 0.0
            log.error("channel %s gave up on %s of %s after %d attempt(s): %s", self.channel.name, note.change,
                      note.alert["id"], attempts, error)
            return 0  # skipped: later alerts must still go out
        self._pending[key] = pending
        self.next_attempt_at_s = now_s + wait_s
        log.warning("channel %s: %s of %s failed (%s); retry %d in %.1f s", self.channel.name, note.change,
                    note.alert["id"], error, attempts, wait_s)
        return None

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Loop until `stop` is set; database errors are logged and the next pass tries again."""
        while not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - a notifier thread must outlive database hiccups
                log.error("channel %s: notifier error: %s", self.channel.name,
                          scrub(repr(exc), self.channel.secrets()))
            stop.wait(min(poll_s, max(0.05, self.next_attempt_at_s - self.clock())) if self.next_attempt_at_s
                      else poll_s)


def start_notifiers(engine: Engine, channels: Sequence[ChannelConfig], stop: threading.Event, *,
                    poll_s: float = 1.0) -> list[threading.Thread]:
    """One daemon thread per channel, so a slow or failing channel holds up neither the others nor collection."""
    optional = optional_alert_columns(engine)
    threads = []
    for channel in channels:
        if channel.unresolved:
            log.error("channel %s not started: %s", channel.name, channel.unresolved)
            continue
        notifier = ChannelNotifier(engine, channel, optional_columns=optional)
        thread = threading.Thread(target=notifier.run, args=(stop,), kwargs={"poll_s": poll_s},
                                  name=f"notify-{channel.name}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads
