""""Is this normal?": a queue's figure now against its usual level at this hour of the week (pure computation).

Usual level: the hourly rollups of the same hour of the week over the past WEEKS weeks; with fewer than
MIN_WEEKS of them (a young history), the same hour of each of the past DAYS days, needing MIN_DAYS of them.
From those values: the median m and the median absolute deviation MAD; 1.4826·MAD estimates the standard
deviation of normally distributed values while ignoring outliers (one bad week moves neither). A figure x is
unusual when |x − m| > K · 1.4826 · MAD and |x − m| ≥ the figure's minimum difference (so a flat history, MAD
0, does not flag noise). The score |x − m| / (1.4826 · MAD) (infinite for MAD 0) orders queues worst first.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
WEEKS = 8
DAYS = 14
MIN_WEEKS = 4
MIN_DAYS = 3
K = 3.5
MAD_SCALE = 1.4826
FIGURES = ("waiting", "p95_wait_ms", "error_rate_pct", "p95_processing_ms")
"""Figures judged: depth (the hour's peak waiting), p95 wait, error rate (% of ended jobs), p95 processing."""
MIN_DIFFERENCE = {"waiting": 20.0, "p95_wait_ms": 1000.0, "error_rate_pct": 2.0, "p95_processing_ms": 250.0}
FIGURE_LABELS = {"waiting": "depth", "p95_wait_ms": "p95 wait", "error_rate_pct": "error rate",
                 "p95_processing_ms": "p95 processing"}


def weekly_buckets_ms(now_ms: int, weeks: int = WEEKS) -> list[int]:
    """Start of the same hour of the week, 1 to `weeks` weeks before the hour holding `now_ms`."""
    hour = now_ms - now_ms % HOUR_MS
    return [hour - w * WEEK_MS for w in range(1, weeks + 1)]


def daily_buckets_ms(now_ms: int, days: int = DAYS) -> list[int]:
    """Start of the same hour, 1 to `days` days before the hour holding `now_ms`."""
    hour = now_ms - now_ms % HOUR_MS
    return [hour - d * DAY_MS for d in range(1, days + 1)]


def history_buckets_ms(now_ms: int) -> list[int]:
    """Every hourly bucket a baseline may use (weekly and daily), oldest first."""
    return sorted(set(weekly_buckets_ms(now_ms)) | set(daily_buckets_ms(now_ms)))


@dataclass(frozen=True)
class Baseline:
    """The usual level of one figure: median, MAD and where they come from."""

    median: float
    mad: float
    points: int
    basis: str  # "weeks" (same hour of the week) or "days" (same hour of previous days)

    @property
    def spread(self) -> float:
        """1.4826 · MAD: a robust standard deviation."""
        return MAD_SCALE * self.mad


def baseline(values_by_bucket: Mapping[int, float], now_ms: int) -> Baseline | None:
    """The usual level from hourly values keyed by bucket start (ms); None when history is too short."""
    weekly = [values_by_bucket[b] for b in weekly_buckets_ms(now_ms) if _usable(values_by_bucket.get(b))]
    if len(weekly) >= MIN_WEEKS:
        values, basis = weekly, "weeks"
    else:
        values = [values_by_bucket[b] for b in daily_buckets_ms(now_ms) if _usable(values_by_bucket.get(b))]
        basis = "days"
        if len(values) < MIN_DAYS:
            return None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return Baseline(median=median, mad=mad, points=len(values), basis=basis)


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass(frozen=True)
class Unusual:
    """One figure of one queue that is far from its usual level."""

    figure: str
    value: float
    usual: Baseline
    score: float  # |x − median| / spread; inf when the usual values do not vary

    @property
    def label(self) -> str:
        return FIGURE_LABELS.get(self.figure, self.figure)

    @property
    def direction(self) -> str:
        return "above" if self.value > self.usual.median else "below"


def judge(value: float | None, usual: Baseline | None, figure: str, k: float = K) -> Unusual | None:
    """The figure as Unusual when it differs strongly from its usual level; None otherwise or unmeasured."""
    if not _usable(value) or usual is None:
        return None
    difference = abs(value - usual.median)
    if difference < MIN_DIFFERENCE.get(figure, 0.0) or difference <= k * usual.spread:
        return None
    score = difference / usual.spread if usual.spread > 0 else math.inf
    return Unusual(figure=figure, value=float(value), usual=usual, score=score)


def unusual_figures(current: Mapping[str, float | None], history: Mapping[str, Mapping[int, float]],
                    now_ms: int, figures: Iterable[str] = FIGURES) -> list[Unusual]:
    """A queue's unusual figures, worst first (`history`: figure -> bucket start -> hourly value)."""
    found = [u for figure in figures
             if (u := judge(current.get(figure), baseline(history.get(figure, {}), now_ms), figure))]
    return sorted(found, key=lambda u: -u.score)


def worst_first(queues: Sequence[tuple[str, str, list[Unusual]]]) -> list[tuple[str, str, list[Unusual]]]:
    """(library, queue, unusual figures) with some unusual figure, the highest score first."""
    flagged = [entry for entry in queues if entry[2]]
    return sorted(flagged, key=lambda e: (-max(u.score for u in e[2]), e[1], e[0]))
