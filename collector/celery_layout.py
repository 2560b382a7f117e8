"""Celery's Redis layout (kombu 5.x Redis transport) and pure parsers for what it stores and publishes; no I/O.

Keys (all behind kombu's `global_keyprefix`, empty by default):
- `<queue>` and `<queue><sep><step>` for every non-zero priority step: LISTs of waiting messages (LPUSH, consumed
  with BRPOP/RPOP, so the oldest message of a bucket is its tail, LINDEX -1). sep "\\x06\\x16", steps [0, 3, 6, 9].
- `_kombu.binding.<exchange>`: SET of `routing_key<sep>pattern<sep>queue`; `celeryev` and `*.pidbox` tables belong to
  event and remote-control consumers, not to task queues. kombu 5.7 also keeps `_kombu.binding_permanent.<exchange>`
  and `_kombu.binding_deadlines`, which the `_kombu.binding.*` match does not cover.
- `unacked` HASH delivery tag -> JSON `[message, exchange, routing_key]`, `unacked_index` ZSET of fetch times.
Events go out on PUBLISH channels `<global_keyprefix><fanout_prefix>celeryev/<type with - as .>`, the fanout prefix
being `/<db>.` (kombu >= 5.4; older kombu published under the literal `/{db}.`). Worker task events are batched
on `.../task.multi` with a JSON list as body.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from collector.replies import glob_escape, text  # noqa: F401 - re-exported
from core.values import as_name, as_text, epoch_s, parse_json

ENVELOPE_MAX_CHARS = 8_000_000
"""Longest message envelope parsed (a larger one's headers are not read)."""

DEFAULT_SEP = "\x06\x16"
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
BINDING_PREFIX = "_kombu.binding."
EVENT_EXCHANGE = "celeryev"
PIDBOX_SUFFIX = ".pidbox"
RESULT_KEY_PREFIX = "celery-task-meta-"
PUBLISHED_AT_HEADER = "qw_published_at"
_TIMEOUT_NAME = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?:Soft)?TimeLimitExceeded\b")


@dataclass(frozen=True)
class CeleryLayout:
    """Key and channel names of one Celery deployment on one Redis database."""

    global_keyprefix: str = ""
    sep: str = DEFAULT_SEP
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    fanout_prefix: str | bool = True
    db: int = 0
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"

    def bucket_keys(self, queue: str) -> list[str]:
        """Every priority bucket LIST of a queue, highest priority (consumed first) first."""
        keys: list[str] = []
        for step in sorted(set(self.priority_steps) | {0}):
            key = self.global_keyprefix + (f"{queue}{self.sep}{step}" if step else queue)
            if key not in keys:
                keys.append(key)
        return keys

    @property
    def binding_match(self) -> str:
        """SCAN MATCH pattern of the binding tables."""
        return glob_escape(self.global_keyprefix + BINDING_PREFIX) + "*"

    def exchange_of(self, binding_key: str) -> str | None:
        """The exchange of a binding table key, None if it is not one of this prefix."""
        head = self.global_keyprefix + BINDING_PREFIX
        return binding_key[len(head):] if binding_key.startswith(head) else None

    @property
    def unacked(self) -> str:
        return self.global_keyprefix + self.unacked_key

    @property
    def unacked_index(self) -> str:
        return self.global_keyprefix + self.unacked_index_key

    @property
    def event_channel_pattern(self) -> str:
        """PSUBSCRIBE pattern of every Celery event."""
        if self.fanout_prefix is True:
            prefix = f"/{self.db}."
        elif self.fanout_prefix:
            prefix = str(self.fanout_prefix).format(db=self.db)
        else:
            prefix = ""
        return glob_escape(self.global_keyprefix + prefix + EVENT_EXCHANGE) + "/*"


def is_task_exchange(exchange: str) -> bool:
    """Whether a binding table routes task messages (not events or remote control)."""
    return exchange != EVENT_EXCHANGE and not exchange.endswith(PIDBOX_SUFFIX)


def parse_binding(member: Any, sep: str = DEFAULT_SEP) -> tuple[str, str, str] | None:
    """(routing_key, pattern, queue) of a binding table member."""
    parts = (as_name(member, 3 * 255 + 2 * len(sep)) or "").split(sep)
    if len(parts) != 3 or as_name(parts[2]) is None:
        return None
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Bindings:
    """Task queues and how exchanges route to them, from the binding tables."""

    by_exchange: Mapping[str, Sequence[tuple[str, str]]]  # exchange -> [(routing_key, queue)]

    @classmethod
    def from_tables(cls, tables: Mapping[str, Iterable[Any]], sep: str = DEFAULT_SEP) -> Bindings:
        """Bindings of task exchanges only (event and pidbox tables dropped)."""
        by_exchange: dict[str, list[tuple[str, str]]] = {}
        for exchange, members in tables.items():
            if not is_task_exchange(exchange):
                continue
            for member in members:
                parsed = parse_binding(member, sep)
                if parsed and not parsed[2].startswith(EVENT_EXCHANGE + "."):
                    by_exchange.setdefault(exchange, []).append((parsed[0], parsed[2]))
        return cls({name: sorted(set(rows)) for name, rows in by_exchange.items()})

    @property
    def queues(self) -> set[str]:
        return {queue for rows in self.by_exchange.values() for _, queue in rows}

    def queue_for(self, exchange: str | None, routing_key: str | None, known: Iterable[str] = ()) -> str | None:
        """The queue a message published with this exchange and routing key went to, if it can be told."""
        if exchange is None:
            rows = [row for table in self.by_exchange.values() for row in table if row[0] == routing_key]
        else:
            rows = list(self.by_exchange.get(exchange, ()))
        exact = [queue for key, queue in rows if key == routing_key]
        if exact:
            return exact[0]
        if len({queue for _, queue in rows}) == 1:
            return rows[0][1]
        if routing_key and (not exchange or routing_key in self.queues or routing_key in set(known)):
            return routing_key
        return None


def decode_envelope(raw: Any) -> dict | None:
    """The JSON envelope kombu stores or publishes for one message, None when it is not (bounded) JSON."""
    envelope = parse_json(raw, max_chars=ENVELOPE_MAX_CHARS)
    return envelope if isinstance(envelope, dict) else None


def envelope_body(envelope: Mapping[str, Any]) -> Any:
    """The decoded JSON body of an envelope, None for other serializers."""
    body = envelope.get("body")
    properties = _mapping(envelope.get("properties"))
    if properties.get("body_encoding") == "base64" and isinstance(body, str):
        try:
            body = base64.b64decode(body).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    if "json" not in (as_text(envelope.get("content-type"), 255) or "application/json"):
        return None
    return parse_json(body, max_chars=ENVELOPE_MAX_CHARS) if isinstance(body, str) else body


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else (a string where headers were expected...)."""
    return value if isinstance(value, dict) else {}


def decode_events(raw: Any) -> list[dict]:
    """The events of one PUBLISH payload (a single event or a worker's batched `task.multi` list)."""
    envelope = decode_envelope(raw)
    if envelope is None:
        return []
    body = envelope_body(envelope)
    events = body if isinstance(body, list) else [body]
    return [event for event in events if isinstance(event, dict) and isinstance(event.get("type"), str)]


@dataclass(frozen=True)
class WaitingHead:
    """The message at the tail of a bucket list (the next one consumed from that bucket)."""

    task_id: str | None
    published_at_s: float | None
    malformed: bool = False
    """Not a JSON envelope with a headers object (its task id and publish time are unknown)."""


def parse_head(raw: Any) -> WaitingHead | None:
    """Task id and publish-time header of a waiting message, None for an empty list."""
    if raw is None:
        return None
    envelope = decode_envelope(raw) or {}
    headers = envelope.get("headers")
    if not isinstance(headers, dict):
        return WaitingHead(None, None, malformed=True)
    published = headers.get(PUBLISHED_AT_HEADER)
    published_at_s = epoch_s(published)
    return WaitingHead(as_name(headers.get("id")), published_at_s,
                       malformed=published is not None and published_at_s is None)


@dataclass(frozen=True)
class Unacked:
    """A message fetched by a worker and not acknowledged yet."""

    task_id: str | None
    task_name: str | None
    exchange: str | None
    routing_key: str | None
    eta_s: float | None


def parse_unacked(raw: Any) -> Unacked | None:
    """An `unacked` hash value: JSON [message envelope, exchange, routing_key]."""
    entry = parse_json(raw, max_chars=ENVELOPE_MAX_CHARS)
    if not isinstance(entry, list) or len(entry) != 3:
        return None
    message, exchange, routing_key = entry
    headers = _mapping(_mapping(message).get("headers"))
    return Unacked(as_name(headers.get("id")), as_name(headers.get("task")), _routing_text(exchange),
                   _routing_text(routing_key), parse_iso_s(headers.get("eta")))


def _routing_text(value: Any) -> str | None:
    """An exchange or routing key: a usable name, or "" (the default exchange)."""
    return "" if value == "" else as_name(value)


def parse_iso_s(value: Any) -> float | None:
    """Epoch seconds of an ISO-8601 timestamp with offset (Celery's eta/expires), None if absent or naive."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return epoch_s(parsed.timestamp()) if parsed.tzinfo else None
    except (ValueError, OverflowError, OSError):
        return None


def is_timeout(exception: Any, traceback: Any = None) -> bool:
    """Whether a task-failed event reports a hard or soft time limit.

    A hard limit in the prefork pool reports the exception as `ExceptionWithTraceback()`; the traceback's last line
    names `billiard.exceptions.TimeLimitExceeded`.
    """
    if _TIMEOUT_NAME.match((as_text(exception, 1024) or "").strip()):
        return True
    tail = traceback[-4096:] if isinstance(traceback, str) else ""
    lines = [line.strip() for line in tail.strip().splitlines() if line.strip()]
    return bool(lines) and bool(_TIMEOUT_NAME.match(lines[-1]))
