"""What BullMQReader's atomic snapshot asks about one queue, and how the replies are read (round trip 2).

Per queue: LLEN/ZCARD of every state, EXISTS/HMGET of `:meta`, five ZCOUNTs of `:prioritized` (one per
tier), `head_probe` ids at both ends of `:wait` and of the old-style `:paused` list, the lowest member of
each priority 1..10 of `:prioritized` and of all higher ones (candidates for the oldest waiting job), the
first `probe` ids of `:active`, HMGET count/prevTS/prevCount of `:metrics:completed`/`:metrics:failed`, the
`:events` ids and entries (events source), ZCOUNT and ZREVRANGEBYSCORE of `:completed`/`:failed` above the
cursors (newest `probe`). A first read (Cursor(0.0, 0.0), no resume state) also asks for the lowest entry of
`:completed`/`:failed`, the newest `events_per_cycle` entries of `:events` and the newest
METRICS_POINTS_READ points of each `:metrics:*:data` list (see collector/bullmq_recent.py).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.client import Pipeline

from collector.bullmq_discovery import QueueRef
from collector.bullmq_layout import (
    ThroughputState,
    is_job_id,
    oldest_probe_ranges,
    parse_int,
    tier_score_ranges,
)
from collector.bullmq_recent import METRICS_POINTS_READ, HeldSet, MetricsMinutes, RecentCount, recent_past
from core.model import Cursor
from core.problems import ProblemLog
from core.values import as_int, as_name, as_text, epoch_ms, epoch_s, finite_score

METRICS_FIELDS = ("count", "prevTS", "prevCount")
STATE_FIELDS = {"wait": "waiting", "paused": "waiting", "prioritized": "waiting", "active": "active",
                "delayed": "delayed", "waiting-children": "delayed", "failed": "failed", "completed": "completed"}
"""The QueueMetrics field each state's count feeds."""
FLOW_FIELDS = frozenset({"jobsPerMinute", "errorRate", "timeoutRate"})
"""What an unreadable finish source (sets, events) leaves unmeasured."""
STATES = (("llen", "wait"), ("llen", "paused"), ("zcard", "prioritized"), ("llen", "active"),
          ("zcard", "delayed"), ("zcard", "waiting-children"), ("zcard", "failed"), ("zcard", "completed"))


@dataclass(frozen=True)
class Probe:
    """How much of each list and set one snapshot reads per queue."""

    sample_jobs: int
    head_probe: int
    events_per_cycle: int


@dataclass
class QueueSnap:
    """One queue's replies from the snapshot."""

    ref: QueueRef
    cursor: Cursor
    prev: ThroughputState | None
    events_from: str | None
    counts: dict[str, int] = field(default_factory=dict)
    exists: bool = False
    is_job_hash: bool = False
    paused: bool = False
    tiers: dict[int, int] = field(default_factory=dict)
    waiting_ids: list[str] = field(default_factory=list)
    """Candidates for the oldest waiting job: the ends of `:wait`/`:paused`, the first of each priority."""
    active_ids: list[str] = field(default_factory=list)
    metrics: tuple[int | None, int | None] = (None, None)
    latest_event_id: str | None = None
    first_event_id: str | None = None
    events: list[Any] = field(default_factory=list)
    tops: tuple[list[tuple[str, float]], list[tuple[str, float]]] = ([], [])
    set_gains: tuple[int, int] = (0, 0)
    recent: RecentCount | None = None
    """What a first read counts; None on later reads."""
    unavailable: set[str] = field(default_factory=set)
    """QueueMetrics fields this queue's replies could not give (a key of the wrong type, a malformed count)."""
    reply_count: int = 0
    """How many replies `ask` queued for this queue."""

    @property
    def counts_all(self) -> bool:
        """Whether a queue without resume state was given the count-everything cursor (0.0, 0.0)."""
        return self.prev is None and self.cursor.finished_score == 0.0 and self.cursor.failed_score == 0.0

    @property
    def scores(self) -> tuple[float | None, float | None]:
        """The finite sample cursors (completed, failed) of a queue; None starts a baseline."""
        return tuple(score if score is not None and math.isfinite(score) else None  # type: ignore[return-value]
                     for score in (self.cursor.finished_score, self.cursor.failed_score))

    @property
    def waiting(self) -> bool:
        return bool(self.counts["wait"] or self.counts["paused"] or self.counts["prioritized"])


def ask(pipe: Pipeline, snap: QueueSnap, probe: Probe) -> None:
    """Queue the commands of one queue's part of the snapshot."""
    ref, sample = snap.ref, max(1, probe.sample_jobs)
    before = len(pipe.command_stack)
    for command, suffix in STATES:
        getattr(pipe, command)(ref.key(suffix))
    pipe.exists(ref.key("meta"))
    pipe.hmget(ref.key("meta"), ["paused", "timestamp"])
    for _, low, high in tier_score_ranges():
        pipe.zcount(ref.key("prioritized"), low, _bound(high))
    for suffix in ("wait", "paused"):
        pipe.lrange(ref.key(suffix), 0, probe.head_probe - 1)
        pipe.lrange(ref.key(suffix), -probe.head_probe, -1)
    for low, high in oldest_probe_ranges():
        pipe.zrange(ref.key("prioritized"), low, _bound(high), byscore=True, offset=0, num=1)
    pipe.lrange(ref.key("active"), 0, sample - 1)
    for target in ("completed", "failed"):
        pipe.hmget(ref.layout.metrics(ref.queue, target), list(METRICS_FIELDS))
    pipe.xrevrange(ref.key("events"), "+", "-", count=1)
    if snap.events_from is not None:
        if snap.counts_all:
            pipe.xrevrange(ref.key("events"), "+", "-", count=probe.events_per_cycle)
        else:
            pipe.xrange(ref.key("events"), snap.events_from, "+", count=probe.events_per_cycle)
        pipe.xrange(ref.key("events"), "-", "+", count=1)
    for suffix, score in zip(("completed", "failed"), snap.scores):
        if score is None:
            pipe.zrevrangebyscore(ref.key(suffix), "+inf", "-inf", start=0, num=1, withscores=True)
        else:
            pipe.zcount(ref.key(suffix), f"({score!r}", "+inf")
            pipe.zrevrangebyscore(ref.key(suffix), "+inf", f"({score!r}", start=0, num=sample, withscores=True)
    if snap.counts_all:
        for target in ("completed", "failed"):
            pipe.zrange(ref.key(target), 0, 0, withscores=True)
        for target in ("completed", "failed"):
            pipe.lrange(ref.layout.metrics_data(ref.queue, target), 0, METRICS_POINTS_READ - 1)
    snap.reply_count = len(pipe.command_stack) - before


def parse(snap: QueueSnap, replies: Iterator[Any], problems: ProblemLog) -> None:
    """Read one queue's replies, in the order `ask` queued them; a failed command (e.g. WRONGTYPE) or an
    unusable value makes the figures it feeds unavailable for this queue (QueueSnap.unavailable)."""
    ref = snap.ref

    def take(suffix: str, default: Any, feeds: frozenset[str] = frozenset()) -> Any:
        reply = next(replies)
        if isinstance(reply, Exception):
            problems.report(ref.key(suffix), f"{type(reply).__name__}: {reply}")
            snap.unavailable |= feeds
            return default
        return default if reply is None else reply

    snap.counts = {}
    for _, suffix in STATES:
        count = as_int(take(suffix, None, frozenset({STATE_FIELDS[suffix]})))
        if count is None:
            snap.unavailable.add(STATE_FIELDS[suffix])
        snap.counts[suffix] = count or 0
    snap.exists = bool(take("meta", 0))
    paused, job_timestamp = (list(take("meta", [None, None])) + [None, None])[:2]
    snap.paused, snap.is_job_hash = paused is not None, job_timestamp is not None
    for tier, _, _ in tier_score_ranges():
        snap.tiers[tier] = as_int(take("prioritized", 0)) or 0
    ends: list[str] = []
    for suffix in ("wait", "paused"):
        head = [job_id for job_id in (as_name(m) for m in take(suffix, [])) if is_job_id(job_id)]
        tail = [as_name(member) for member in take(suffix, [])]
        if suffix == "wait" and tail and not is_job_id(tail[-1]):
            snap.counts["wait"] = max(0, snap.counts["wait"] - 1)
        ends += head[:1] + [job_id for job_id in tail if is_job_id(job_id)][-1:]  # type: ignore[misc]
    for _ in oldest_probe_ranges():
        ends += [as_name(member) or "" for member in take("prioritized", [])]
    snap.waiting_ids = list(dict.fromkeys(job_id for job_id in ends if job_id))
    snap.active_ids = [job_id for job_id in (as_name(m) for m in take("active", [])) if is_job_id(job_id)]
    metric_fields = [list(take(f"metrics:{target}", [])) for target in ("completed", "failed")]
    snap.metrics = (parse_int(_first(metric_fields[0])), parse_int(_first(metric_fields[1])))
    for target, fields, value in zip(("completed", "failed"), metric_fields, snap.metrics):
        if value is None and _first(fields) is not None:
            problems.report(ref.key(f"metrics:{target}"), f"count {as_text(_first(fields), 80)!r} is not usable; "
                            "finishes are counted from the events stream")
    snap.latest_event_id = first_id(take("events", [], FLOW_FIELDS))
    if snap.events_from is not None:
        snap.events = list(take("events", [], FLOW_FIELDS))
        if snap.counts_all:
            snap.events.reverse()
        snap.first_event_id = first_id(take("events", [], FLOW_FIELDS))
    gains, tops = [], []
    for suffix, score in zip(("completed", "failed"), snap.scores):
        gains.append(0 if score is None else as_int(take(suffix, 0, FLOW_FIELDS)) or 0)
        tops.append(_entries(ref.key(suffix), take(suffix, [], FLOW_FIELDS), problems))
    snap.set_gains, snap.tops = (gains[0], gains[1]), (tops[0], tops[1])
    if snap.counts_all:
        lows = [_entries(ref.key(suffix), take(suffix, [], FLOW_FIELDS), problems)
                for suffix in ("completed", "failed")]
        held = (HeldSet(snap.counts["completed"], lows[0][0][1] if lows[0] else None),
                HeldSet(snap.counts["failed"], lows[1][0][1] if lows[1] else None))
        points = [take(f"metrics:{target}:data", []) for target in ("completed", "failed")]
        minutes = (MetricsMinutes.parse(metric_fields[0], points[0]),
                   MetricsMinutes.parse(metric_fields[1], points[1]))
        snap.recent = recent_past(held, snap.events if snap.events_from is not None else None, minutes)


def ok(reply: Any, default: Any) -> Any:
    """A pipeline reply, or the default when the command failed (e.g. a key of the wrong type)."""
    return default if isinstance(reply, Exception) or reply is None else reply


def first_id(reply: Sequence[Any]) -> str | None:
    return as_name(reply[0][0]) if reply else None


def _entries(key: str, reply: Any, problems: ProblemLog) -> list[tuple[str, float]]:
    """(job id, score) pairs of a ZRANGE/ZREVRANGEBYSCORE WITHSCORES reply; infinite scores and unusable ids
    are skipped and reported."""
    pairs = [(as_name(member), finite_score(score)) for member, score in reply]
    usable = [(job_id, score) for job_id, score in pairs if job_id is not None and score is not None]
    if len(usable) < len(pairs):
        problems.report(key, f"{len(pairs) - len(usable)} entries with an unusable id or score skipped")
    return usable


def enqueued_at_s(fields: Sequence[Any]) -> float | None:
    """When a job became runnable: its `timestamp` plus its `delay` (ms fields), in epoch seconds; None when
    either is malformed or the sum is not a plausible time."""
    created_s = epoch_ms(fields[0]) if fields else None
    if created_s is None:
        return None
    raw_delay = fields[1] if len(fields) > 1 else None
    delay_ms = parse_int(raw_delay) if raw_delay not in (None, b"", "") else 0
    return epoch_s(created_s + delay_ms / 1000.0) if delay_ms is not None else None


def _bound(score: float) -> float | str:
    return "+inf" if math.isinf(score) else score


def _first(values: Sequence[Any]) -> Any:
    return values[0] if values else None
