"""The recent past of a BullMQ queue read for the first time: which finishes to count, and since when; no I/O.

A queue read with the count-everything cursor (Cursor(0.0, 0.0), no resume state) counts the finishes that
happened before the read and are still held in Redis, from one source so that both counts cover one span:
- "sets": every entry of `:completed` and `:failed` (exact, with the jobs' own finishedOn as scores), since
  the lowest score. Used unless another source shows that a set lost entries.
- A set lost entries (removeOnComplete / removeOnFail trim the oldest, `true` keeps none) when the events
  stream or the metrics minutes hold more finishes of its kind than the set does. Then the finishes are
  counted from whichever of these two holds more:
  - "events": the `completed`/`failed` entries among the newest `events_per_cycle` of `:events`, since the
    earliest of them (stream ids are the server's epoch ms); every failure's failedReason is known.
  - "metrics": the per-minute lists of `:metrics:completed`/`:metrics:failed` (see MetricsMinutes), over the
    minutes both kinds cover, since the start of the earliest minute with a finish. The lifetime `count` is
    never taken as one span's finishes.
What the counts cannot tell: two sets trimmed to different depths further back than the stream and the
metrics reach look untrimmed, and the span then starts at the deeper set's oldest entry.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.bullmq_layout import parse_int, parse_stream_id, text

MINUTE_MS = 60_000
METRICS_POINTS_READ = 1440
"""Newest per-minute points read per metrics list on a first read (one day)."""


@dataclass(frozen=True)
class MetricsMinutes:
    """One `:metrics:<kind>` hash {count, prevTS, prevCount} and its `:data` list, as finishes per minute.

    BullMQ's collectMetrics (moveToFinished) counts every final finish in `count`; when a finish falls in a
    later minute than `prevTS`, it pushes `count - prevCount` (the finishes of prevTS's minute) followed by
    one 0 per minute skipped, then sets prevTS to that finish and prevCount to the count before it. So the
    list's point i is minute floor(prevTS / 60000) - 1 - i, and `count - prevCount` finishes fall in
    prevTS's minute. Limit: a gap longer than the list's maxDataPoints puts the older minute's finishes on
    the oldest point.
    """

    count: int
    prev_ts_ms: int
    prev_count: int
    points: tuple[int, ...] = ()

    @classmethod
    def parse(cls, fields: Sequence[object] | None, points: Sequence[object] | None) -> MetricsMinutes | None:
        """From HMGET count prevTS prevCount and LRANGE of the data list; None without a hash."""
        count, prev_ts, prev_count = (parse_int(v) for v in (list(fields or []) + [None] * 3)[:3])  # type: ignore[arg-type]
        if count is None or prev_ts is None:
            return None
        return cls(count, prev_ts, prev_count or 0, tuple(parse_int(p) or 0 for p in (points or [])))  # type: ignore[arg-type]

    @property
    def last_minute(self) -> int:
        return self.prev_ts_ms // MINUTE_MS

    @property
    def first_minute(self) -> int:
        """The earliest minute whose finishes are all known."""
        return self.last_minute - len(self.points)

    def per_minute(self) -> dict[int, int]:
        """Finishes by minute number (epoch ms // 60000)."""
        minutes = {self.last_minute - 1 - i: max(0, point) for i, point in enumerate(self.points)}
        minutes[self.last_minute] = max(0, self.count - self.prev_count)
        return minutes


@dataclass(frozen=True)
class HeldSet:
    """What a `:completed` or `:failed` set held at the snapshot."""

    size: int
    lowest_ms: float | None


@dataclass(frozen=True)
class RecentCount:
    """Finishes of the recent past and the earliest end time (epoch s) among them."""

    finished: int
    failed: int
    since_s: float | None
    source: str  # "sets", "events" or "metrics"
    failures: list[tuple[str, str | None]] | None = None
    """(job id, failedReason) of every failure counted, when counted from events."""


def from_events(entries: Sequence[tuple[object, object]]) -> RecentCount:
    """Completed and failed entries of a chronological XRANGE reply, since the earliest of them."""
    finished, failures, first_ms = 0, [], None
    for entry_id, payload in entries:
        fields = {text(k): text(v) for k, v in (payload or {}).items()}  # type: ignore[attr-defined]
        event = fields.get("event")
        if event not in ("completed", "failed"):
            continue
        parsed = parse_stream_id(text(entry_id))
        if parsed is not None and (first_ms is None or parsed[0] < first_ms):
            first_ms = parsed[0]
        if event == "completed":
            finished += 1
        else:
            failures.append((fields.get("jobId") or "", fields.get("failedReason")))
    since = first_ms / 1000.0 if first_ms is not None else None
    return RecentCount(finished, len(failures), since, "events", failures)


def from_metrics(completed: MetricsMinutes | None, failed: MetricsMinutes | None) -> RecentCount | None:
    """Finishes of the minutes both metrics lists cover; None without metrics."""
    present = [m for m in (completed, failed) if m is not None]
    if not present:
        return None
    start = max(m.first_minute for m in present)
    counts, earliest = [], []
    for minutes in (completed, failed):
        counted = {minute: n for minute, n in (minutes.per_minute() if minutes else {}).items()
                   if minute >= start and n}
        counts.append(sum(counted.values()))
        earliest.extend(counted)
    since = min(earliest) * MINUTE_MS / 1000.0 if earliest else None
    return RecentCount(counts[0], counts[1], since, "metrics")


def recent_past(held: tuple[HeldSet, HeldSet], events: Sequence[tuple[object, object]] | None,
                metrics: tuple[MetricsMinutes | None, MetricsMinutes | None]) -> RecentCount:
    """The finishes a first read counts (see the module docstring)."""
    others = [count for count in (from_events(events) if events is not None else None,
                                  from_metrics(*metrics)) if count is not None]
    lost = any(other.finished > held[0].size or other.failed > held[1].size for other in others)
    if not lost:
        lows = [s.lowest_ms for s in held if s.size and s.lowest_ms is not None]
        return RecentCount(held[0].size, held[1].size, min(lows) / 1000.0 if lows else None, "sets")
    best = max(others, key=lambda c: (c.finished + c.failed, c.source == "events"))
    return best
