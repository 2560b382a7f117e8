"""Silences: matchers (queue glob, library, type, severity) with an end time, and duration parsing."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Iterable

DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


@dataclass(frozen=True)
class Silence:
    """Alerts matching every given matcher (None matches anything) are silenced from start to end."""

    id: int
    starts_at_s: float
    ends_at_s: float
    queue_glob: str | None = None
    library: str | None = None
    alert_type: str | None = None
    severity: str | None = None

    def active(self, now_s: float) -> bool:
        return self.starts_at_s <= now_s < self.ends_at_s

    def matches(self, queue_name: str, library: str | None, alert_type: str, severity: str) -> bool:
        """Whether an alert with these fields falls under this silence (the glob is case-sensitive)."""
        return ((self.queue_glob is None or fnmatch.fnmatchcase(queue_name, self.queue_glob))
                and (self.library is None or self.library == library)
                and (self.alert_type is None or self.alert_type == alert_type)
                and (self.severity is None or self.severity == severity))


def silence_for(silences: Iterable[Silence], now_s: float, queue_name: str, library: str | None,
                alert_type: str, severity: str) -> int | None:
    """Id of the oldest active silence that matches the alert, or None."""
    matching = [s.id for s in silences
                if s.active(now_s) and s.matches(queue_name, library, alert_type, severity)]
    return min(matching) if matching else None


def parse_duration_s(text: str) -> float:
    """'90s', '15m', '2h30m', '1d' or plain seconds ('600') as seconds above 0; ValueError otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h30m, 1d)") from None
        seconds = sum(float(n) * DURATION_UNITS_S[u] for n, u in parts)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be above 0, got {text!r}")
    return seconds


LIBRARIES = ("rq", "bullmq", "celery")
SEVERITIES = ("warning", "critical")


def check_matchers(*, queue_glob: str | None, library: str | None, alert_type: str | None,
                   severity: str | None, known_types: Iterable[str]) -> None:
    """ValueError naming the first matcher that can match nothing (an unknown library, type or severity)."""
    known = sorted(known_types)
    if queue_glob is not None and not queue_glob.strip():
        raise ValueError("the queue pattern must not be empty")
    if library is not None and library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; known: {', '.join(LIBRARIES)}")
    if alert_type is not None and alert_type not in known:
        raise ValueError(f"unknown alert type {alert_type!r}; known: {', '.join(known)}")
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; known: {', '.join(SEVERITIES)}")
