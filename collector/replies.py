"""Small pure helpers shared by the backends: Redis replies as text, literal glob patterns."""
from __future__ import annotations

import re
from typing import Any

_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")


def text(value: Any) -> str | None:
    """A Redis reply value as str (None stays None; bytes are decoded as UTF-8, errors replaced)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def glob_escape(literal: str) -> str:
    """A literal string made safe inside a Redis MATCH / PSUBSCRIBE pattern."""
    return _GLOB_SPECIALS.sub(r"\\\1", literal)
