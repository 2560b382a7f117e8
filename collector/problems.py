"""Malformed values in Redis, reported once per key per hour: the one rate-limited log every backend uses."""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from collector.values import as_text

log = logging.getLogger("collector.problems")

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
