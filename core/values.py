"""The one parsing layer for values read from Redis: bounded numbers, plausible times, safe text; no I/O.

Whatever a queue library, a worker or anyone with write access left in Redis, these parsers return a value
that can be stored as it is, or None. None means "malformed or absent": the caller reports that figure as
unavailable (or skips the item) and the rest of the cycle goes on.
- integers are whole, within [low, high] and never beyond SQLite's signed 64-bit range;
- floats are finite and within [low, high];
- times are epoch seconds between 2000 and 2100 (`epoch_s`; `epoch_ms` converts epoch milliseconds);
- names (queues, workers, hosts: stored and reused in key names) decode as strict UTF-8, hold no NUL and are
  at most NAME_MAX characters; free text decodes with errors replaced and is cut at a bound;
- JSON is parsed only when it is at most JSON_MAX_CHARS long and at most JSON_MAX_DEPTH deep.
"""
from __future__ import annotations

import json
import math
from typing import Any

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
COUNT_MAX = 10 ** 15
"""A count of jobs, messages or entries: far above anything real, far below an overflow."""
PID_MAX = 2 ** 31 - 1
EPOCH_MIN_S = 946_684_800.0  # 2000-01-01T00:00:00Z
EPOCH_MAX_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z
DURATION_MAX_S = 10 * 365 * 86400.0
SIZE_MAX_MB = float(2 ** 40)  # a petabyte-scale bound on memory figures
NAME_MAX = 255
"""Longest queue, worker or host name stored (the name columns' width)."""
TEXT_MAX = 65_536
"""Free text (failure reasons, tracebacks) is cut to this many characters before it is examined."""
JSON_MAX_CHARS = 1_000_000
JSON_MAX_DEPTH = 32


def as_text(value: Any, max_len: int = TEXT_MAX) -> str | None:
    """A Redis reply value as str (bytes decoded as UTF-8, errors replaced), cut to `max_len`; None stays None."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:max_len * 4]).decode("utf-8", errors="replace")[:max_len]
    return str(value)[:max_len]


def as_name(value: Any, max_len: int = NAME_MAX) -> str | None:
    """A name as stored and reused in key names: strict UTF-8, no NUL, 1..max_len characters; else None."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) > max_len * 4:
            return None
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
        return None
    return value


def as_int(value: Any, *, low: int = 0, high: int = COUNT_MAX) -> int | None:
    """A whole number within [low, high] (also "12", "12.0", 12.0), None otherwise; bools are not numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    else:
        raw = as_text(value, 64)
        if not raw or len(raw) >= 64:
            return None
        try:
            number = int(raw)
        except ValueError:
            parsed = as_float(raw, low=float(low), high=float(high))
            if parsed is None or not parsed.is_integer():
                return None
            number = int(parsed)
    low, high = max(low, INT64_MIN), min(high, INT64_MAX)
    return number if low <= number <= high else None


def as_float(value: Any, *, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A finite number within [low, high], None otherwise (NaN, inf, "1e400", text, bools)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
    else:
        raw = as_text(value, 64)
        if not raw or len(raw) >= 64:
            return None
        try:
            number = float(raw)
        except ValueError:
            return None
    return number if math.isfinite(number) and low <= number <= high else None


def epoch_s(value: Any) -> float | None:
    """Epoch seconds between 2000 and 2100, None otherwise."""
    return as_float(value, low=EPOCH_MIN_S, high=EPOCH_MAX_S)


def epoch_ms(value: Any) -> float | None:
    """Epoch milliseconds (between 2000 and 2100) as epoch seconds, None otherwise (0 included)."""
    ms = as_float(value, low=EPOCH_MIN_S * 1000.0, high=EPOCH_MAX_S * 1000.0)
    return ms / 1000.0 if ms is not None else None


def duration_s(value: Any) -> float | None:
    """A duration in seconds between 0 and ten years, None otherwise."""
    return as_float(value, low=0.0, high=DURATION_MAX_S)


def size_mb(value: Any) -> float | None:
    """A memory size in MB, non-negative and bounded, None otherwise."""
    return as_float(value, low=0.0, high=SIZE_MAX_MB)


def finite_score(value: Any) -> float | None:
    """A sorted-set score as a finite float (Redis allows +inf and -inf scores), None otherwise."""
    return as_float(value)


def parse_json(raw: Any, *, max_chars: int = JSON_MAX_CHARS, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """Decoded JSON, or None when absent, too long, too deep or not JSON (Infinity and NaN are refused)."""
    body = as_text(raw, max_chars + 1)
    if not body or len(body) > max_chars:
        return None
    if body.count("[") + body.count("{") > max_depth and _depth_exceeds(body, max_depth):
        return None
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_exceeds(body: str, max_depth: int) -> bool:
    """Whether brackets outside strings nest deeper than `max_depth` (checked before json.loads recurses)."""
    depth, in_string, escaped = 0, False, False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False
