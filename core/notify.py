"""Notification rules as pure functions: routes, which feed events notify, repeats, webhook signatures."""
from __future__ import annotations

import fnmatch
import hashlib
import hmac
from dataclasses import dataclass
from typing import Iterable

DEFAULT_REPEAT_INTERVAL_S = 14400.0
TRIGGERS = ("opened", "escalated")
"""Feed events that (re)announce a firing alert."""
FOLLOW_UPS = ("acknowledged", "resolved")
"""Feed events sent only for an alert already announced on the channel."""
FEED_EVENTS = TRIGGERS + FOLLOW_UPS
REPEAT = "repeat"
"""The notification of an alert still firing and unacknowledged after the repeat interval (not a feed event)."""


@dataclass(frozen=True)
class Route:
    """Which alerts a channel receives: empty tuples match everything."""

    severities: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()  # fnmatch globs, e.g. "payments-*"
    libraries: tuple[str, ...] = ()

    def matches(self, severity: str, queue_name: str, libraries: Iterable[str]) -> bool:
        """True when the alert's severity, queue and (any of) its queue's libraries pass every filter."""
        if self.severities and severity not in self.severities:
            return False
        if self.queues and not any(fnmatch.fnmatchcase(queue_name, glob) for glob in self.queues):
            return False
        return not self.libraries or bool(set(self.libraries) & set(libraries))


@dataclass(frozen=True)
class AlertState:
    """The alert's current flags that decide whether it may be notified."""

    resolved: bool
    acknowledged: bool
    silenced: bool
    snoozed_until_s: float | None  # acknowledged_until_s; None when not snoozed or not known


def should_send(change: str, route_ok: bool, state: AlertState, announced: bool) -> bool:
    """Whether a feed event is sent on a channel.

    Triggers go out when the route matches and the alert is not silenced; acknowledgements and resolutions
    only for alerts this channel announced (so nobody hears of the end of an alert they never heard of).
    """
    if change in TRIGGERS:
        return route_ok and not state.silenced
    if change in FOLLOW_UPS:
        return announced
    return False


def repeat_due(state: AlertState, route_ok: bool, last_sent_at_s: float, now_s: float,
               repeat_interval_s: float) -> bool:
    """An announced alert is repeated while it fires unacknowledged, unsilenced, once per interval.

    A snooze (acknowledged until a time) holds repeats back until it ends; a plain acknowledgement stops them.
    """
    if repeat_interval_s <= 0 or state.resolved or state.silenced or not route_ok:
        return False
    if now_s - last_sent_at_s < repeat_interval_s:
        return False
    if state.snoozed_until_s is not None:
        return state.snoozed_until_s <= now_s
    return not state.acknowledged


def webhook_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`, the X-Queuewatch-Signature header."""
    digest = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"

