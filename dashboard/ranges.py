"""The time range picker: 1 h / 6 h / 24 h / 7 d relative to now, or custom UTC dates."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

RANGE_SPANS_S: dict[str, float] = {"1 h": 3600.0, "6 h": 6 * 3600.0, "24 h": 86400.0, "7 d": 7 * 86400.0}
CUSTOM = "Custom"
RANGE_LABELS: tuple[str, ...] = (*RANGE_SPANS_S, CUSTOM)


@dataclass(frozen=True)
class RangeChoice:
    """A chosen range; relative ranges slide with `now_s` so live refreshes keep showing the latest data."""

    label: str
    first_day: date | None = None
    last_day: date | None = None

    def bounds(self, now_s: float) -> tuple[float, float]:
        """(since_s, until_s) of this choice at `now_s`."""
        return range_bounds(self.label, now_s, self.first_day, self.last_day)


def _day_start_s(day: date) -> float:
    return datetime.combine(day, time.min, tzinfo=timezone.utc).timestamp()


def range_bounds(label: str, now_s: float, first_day: date | None = None,
                 last_day: date | None = None) -> tuple[float, float]:
    """(since_s, until_s) for a label; custom ranges run from the first day's 00:00 UTC to the last's end."""
    if label in RANGE_SPANS_S:
        return now_s - RANGE_SPANS_S[label], now_s
    if label != CUSTOM:
        raise ValueError(f"unknown range {label!r}; expected one of {RANGE_LABELS}")
    if first_day is None:
        return now_s - RANGE_SPANS_S["24 h"], now_s
    last_day = last_day or first_day
    if last_day < first_day:
        first_day, last_day = last_day, first_day
    since_s = _day_start_s(first_day)
    until_s = min(_day_start_s(last_day + timedelta(days=1)), max(now_s, since_s + 1.0))
    return since_s, until_s


def requested_range(value: str | None, default: str) -> str:
    """The range a link asked for (?range=6h, "6 h" or "custom"), else `default`."""
    wanted = "".join((value or "").split()).lower()
    return next((label for label in RANGE_LABELS if "".join(label.split()).lower() == wanted), default)


def range_picker(key: str, default: str = "1 h") -> RangeChoice:
    """Range buttons (and date inputs for a custom range) under the given widget key; a link's ?range=
    picks the first choice."""
    first = requested_range(st.query_params.get("range"), default)
    label = st.radio("Time range", RANGE_LABELS, index=RANGE_LABELS.index(first), horizontal=True, key=key)
    if label != CUSTOM:
        return RangeChoice(label)
    today = datetime.now(timezone.utc).date()
    picked = st.date_input("Days (UTC)", value=(today - timedelta(days=1), today), max_value=today,
                           key=f"{key}-days")
    days = list(picked) if isinstance(picked, (list, tuple)) else [picked]
    days = [d for d in days if d is not None]
    return RangeChoice(CUSTOM, days[0] if days else None, days[-1] if days else None)
