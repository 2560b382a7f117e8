"""The time range picker (1 h / 6 h / 24 h / 7 d relative to now, or custom UTC dates) and the previous-period
choice; both are kept in the page's URL (?range=7d, ?range=custom&from=2025-10-18&to=2025-10-19,
?compare=week) so that a reload or a shared link shows the same range."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

RANGE_SPANS_S: dict[str, float] = {"1 h": 3600.0, "6 h": 6 * 3600.0, "24 h": 86400.0, "7 d": 7 * 86400.0}
CUSTOM = "Custom"
RANGE_LABELS: tuple[str, ...] = (*RANGE_SPANS_S, CUSTOM)
# "Compare with" choices: (label shown, URL value, shift in seconds, legend label of the earlier traces).
COMPARISONS: tuple[tuple[str, str, float | None, str], ...] = (
    ("none", "none", None, ""), ("previous day", "day", 86400.0, "previous day"),
    ("previous week", "week", 7 * 86400.0, "previous week"))


@dataclass(frozen=True)
class Comparison:
    """An earlier window to overlay: `shift_s` before the chosen range, its traces named `label`."""

    shift_s: float
    label: str


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


def range_slug(label: str) -> str:
    """A range label as written in the URL: "7 d" -> "7d", "Custom" -> "custom"."""
    return "".join(label.split()).lower()


def requested_range(value: str | None, default: str) -> str:
    """The range a link asked for (?range=6h, "6 h" or "custom"), else `default`."""
    wanted = range_slug(value or "")
    return next((label for label in RANGE_LABELS if range_slug(label) == wanted), default)


def requested_day(value: str | None) -> date | None:
    """A day of the URL (?from=2025-10-18), None when absent or not a date."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def range_query(choice: RangeChoice) -> dict[str, str]:
    """The URL parameters that bring `choice` back."""
    if choice.label != CUSTOM or choice.first_day is None:
        return {"range": range_slug(choice.label)}
    return {"range": range_slug(CUSTOM), "from": choice.first_day.isoformat(),
            "to": (choice.last_day or choice.first_day).isoformat()}


def _remember(parameters: dict[str, str], owned: tuple[str, ...]) -> None:
    """Write these parameters into the URL (only when they changed) and drop the other `owned` ones."""
    for name in owned:
        if name not in parameters and name in st.query_params:
            del st.query_params[name]
    for name, value in parameters.items():
        if st.query_params.get(name) != value:
            st.query_params[name] = value


def range_picker(key: str, default: str = "1 h") -> RangeChoice:
    """Range buttons (and date inputs for a custom range) under the given widget key; the URL's ?range=
    (with ?from= and ?to= for custom days) picks the first choice, and every choice is written back to it."""
    first = requested_range(st.query_params.get("range"), default)
    label = st.radio("Time range", RANGE_LABELS, index=RANGE_LABELS.index(first), horizontal=True, key=key)
    if label != CUSTOM:
        choice = RangeChoice(label)
    else:
        today = datetime.now(timezone.utc).date()
        asked = [requested_day(st.query_params.get(name)) for name in ("from", "to")]
        initial = (asked[0], asked[1] or asked[0]) if asked[0] else (today - timedelta(days=1), today)
        picked = st.date_input("Days (UTC)", value=initial, max_value=today, key=f"{key}-days")
        days = list(picked) if isinstance(picked, (list, tuple)) else [picked]
        days = [d for d in days if d is not None]
        choice = RangeChoice(CUSTOM, days[0] if days else None, days[-1] if days else None)
    _remember(range_query(choice), ("range", "from", "to"))
    return choice


def comparison_of(value: str | None) -> Comparison | None:
    """The comparison of a URL value ("day", "week"); None for "none" or anything else."""
    for _, slug, shift_s, label in COMPARISONS:
        if slug == (value or "") and shift_s is not None:
            return Comparison(shift_s, label)
    return None


def compare_picker(key: str) -> Comparison | None:
    """The "Compare with" choice (none, previous day, previous week), kept in the URL as ?compare=."""
    slugs = [slug for _, slug, _, _ in COMPARISONS]
    asked = st.query_params.get("compare")
    index = slugs.index(asked) if asked in slugs else 0
    label = st.radio("Compare with", [name for name, _, _, _ in COMPARISONS], index=index, horizontal=True,
                     key=key, help="Overlay the same window one day or one week earlier (dashed, faded), "
                                   "shifted onto the current time axis.")
    slug = slugs[[name for name, _, _, _ in COMPARISONS].index(label)]
    _remember({"compare": slug} if slug != "none" else {}, ("compare",))
    return comparison_of(slug)
