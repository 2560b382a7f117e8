"""Malformed values in Redis, reported once per key per hour: the one rate-limited log every backend uses."""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from core.values import NAME_MAX, as_int, as_name, as_text

log = logging.getLogger("core.problems")

EVERY_S = 3600.0
MAX_KEYS = 10_000
KEY_SHOWN = 200
T = TypeVar("T")


class ProblemLog:
    """Logs a warning about a key at most once every `every_s`; remembers at most `max_keys` keys."""

    def __init__(self, logger: logging.Logger = log, *, every_s: float = EVERY_S, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.max_keys = max_keys
        self.clock = clock
        self.reported = 0
        """Problems seen (logged or not) since this log was made."""
        self._last_s: OrderedDict[str, float] = OrderedDict()

    def report(self, key: Any, what: str) -> bool:
        """Note a problem with `key` (a Redis key or item name); logs it unless it was logged within the hour."""
        self.reported += 1
        shown = shown_key(key)
        now_s = self.clock()
        last_s = self._last_s.get(shown)
        if last_s is not None and now_s - last_s < self.every_s:
            return False
        self._last_s[shown] = now_s
        self._last_s.move_to_end(shown)
        while len(self._last_s) > self.max_keys:
            self._last_s.popitem(last=False)
        self.logger.warning("malformed value in Redis at %s: %s", shown, what)
        return True

    def field(self, key: Any, name: str, raw: Any) -> None:
        """Report one field whose value could not be used (the value is shown cut short)."""
        self.report(key, f"field {name!s} = {shown_key(raw)!r} is not usable; that figure is unavailable")

    def guard(self, key: Any, what: str, call: Callable[[], T]) -> T | None:
        """The result of `call`, or None (the item skipped, reported) when it raises on an unforeseen value."""
        try:
            return call()
        except Exception as exc:  # the last resort for one item: the rest of the cycle goes on
            self.report(key, f"{what} skipped ({type(exc).__name__}: {shown_key(str(exc))})")
            return None


def shown_key(key: Any) -> str:
    """A key as it appears in a log line: decoded with errors replaced, NUL visible, cut to KEY_SHOWN."""
    shown = (as_text(key, KEY_SHOWN + 1) or "").replace("\x00", "\\0")
    return shown if len(shown) <= KEY_SHOWN else f"{shown[:KEY_SHOWN]}…"


class HashFields:
    """The fields of one Redis hash through the parsing layer; a present field that is unusable is reported."""

    def __init__(self, problems: ProblemLog, key: str, data: Mapping[str, Any]) -> None:
        self.problems, self.key, self.data = problems, key, data

    def _checked(self, name: str, value: Any) -> Any:
        raw = self.data.get(name)
        if value is None and raw not in (None, b"", ""):
            self.problems.field(self.key, name, raw)
        return value

    def count(self, name: str) -> int | None:
        """A job count: absent is 0 (nothing counted yet), malformed or negative is None."""
        raw = self.data.get(name)
        return 0 if raw in (None, b"", "") else self._checked(name, as_int(raw))

    def number(self, name: str, *, low: int, high: int) -> int | None:
        return self._checked(name, as_int(self.data.get(name), low=low, high=high))

    def time(self, name: str, parse: Callable[[Any], float | None]) -> float | None:
        return self._checked(name, parse(self.data.get(name)))

    def name(self, name: str, max_len: int = NAME_MAX) -> str | None:
        return self._checked(name, as_name(self.data.get(name), max_len))

    def text(self, name: str, max_len: int) -> str | None:
        raw = self.data.get(name)
        return self._checked(name, as_text(raw, max_len) if raw is not None and len(raw) <= max_len else None)
