"""BullMQ's Redis key names (Node bullmq 6.x, Python bullmq 3.x) and pure parsers for what it stores; no I/O."""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from collector.replies import glob_escape, text  # noqa: F401 - re-exported
from core.priorities import BACKGROUND, CRITICAL, HIGH, LOW, NORMAL, TIER_NAMES, TIERS  # noqa: F401 - re-exported
from core.values import as_int, epoch_ms, parse_json

DEFAULT_PREFIX = "bull"
PRIORITY_SCORE_STEP = 2 ** 32
"""`:prioritized` score = priority * 2^32 + insertion counter."""
DELAY_SCORE_STEP = 4096
"""`:delayed` score = due epoch ms * 4096 + sequence."""
LEGACY_MARKER_PREFIX = "0:"
"""Delay markers that bullmq < 5 pushed into `:wait`/`:active` (not jobs)."""
NODE_EVENTS_SUFFIX = ":qe"
"""Client-name suffix of Node QueueEvents connections (not workers)."""
NAMED_WORKER_INFIX = ":w:"
STALLED_REASON = "job stalled more than allowable limit"

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class BullMQLayout:
    """Key names of one BullMQ prefix (`bull` by default, a hash tag such as `{bull}` on Redis Cluster)."""

    prefix: str = DEFAULT_PREFIX

    def key(self, queue: str, suffix: str) -> str:
        """`<prefix>:<queue>:<suffix>` (Python bullmq accepts `:` in queue names, Node bullmq 6 refuses it)."""
        return f"{self.prefix}:{queue}:{suffix}"

    def job(self, queue: str, job_id: str) -> str:
        """HASH of one job: timestamp, delay, processedOn, finishedOn (epoch ms), failedReason, stacktrace."""
        return self.key(queue, job_id)

    def lock(self, queue: str, job_id: str) -> str:
        """STRING held (PX lockDuration) by the worker running the job; gone when the worker died."""
        return f"{self.job(queue, job_id)}:lock"

    def metrics(self, queue: str, target: str) -> str:
        """HASH {count, prevTS, prevCount} kept by workers started with the `metrics` option."""
        return self.key(queue, f"metrics:{target}")

    def metrics_data(self, queue: str, target: str) -> str:
        """LIST of finishes per minute, newest first (see collector.bullmq_recent.MetricsMinutes)."""
        return f"{self.metrics(queue, target)}:data"

    @property
    def meta_pattern(self) -> str:
        """SCAN MATCH pattern of every queue's `:meta` hash under this prefix."""
        return f"{glob_escape(self.prefix)}:*:meta"

    def queue_of_meta_key(self, meta_key: str) -> str | None:
        """The queue name of a `<prefix>:<queue>:meta` key, None for another prefix."""
        head, tail = f"{self.prefix}:", ":meta"
        if not (meta_key.startswith(head) and meta_key.endswith(tail)) or len(meta_key) <= len(head) + len(tail):
            return None
        return meta_key[len(head):-len(tail)]


def parse_int(value: bytes | str | float | None) -> int | None:
    """A non-negative integer field (also "12.0") within core.values' bounds; None if empty or malformed."""
    return as_int(value)


def ms_to_s(value: bytes | str | None) -> float | None:
    """An epoch-milliseconds field as epoch seconds; None if absent, malformed, 0 or implausible."""
    return epoch_ms(value)


def is_job_id(member: str | None) -> bool:
    """Whether a `:wait`/`:active` member is a job id rather than a legacy delay marker."""
    return bool(member) and not member.startswith(LEGACY_MARKER_PREFIX)


def priority_tier(priority: int, *, unprioritized: int = NORMAL) -> int:
    """The spec's tier of a BullMQ priority: the most urgent tier whose number is >= the priority.

    1 -> Critical, 2-3 -> High, 4-5 -> Normal, 6-7 -> Low, 8 and above -> Background; 0 (no priority, such
    jobs wait in `:wait` and run before every prioritized job) -> `unprioritized`.
    """
    if priority <= 0:
        return unprioritized
    return next((tier for tier in TIERS if priority <= tier), BACKGROUND)


def tier_score_ranges() -> list[tuple[int, int, float]]:
    """(tier, lowest, highest `:prioritized` score) for each tier, in order; the last range is open."""
    ranges: list[tuple[int, int, float]] = []
    low_priority = 1
    for tier in TIERS:
        high: float = (tier + 1) * PRIORITY_SCORE_STEP - 1 if tier != TIERS[-1] else float("inf")
        ranges.append((tier, low_priority * PRIORITY_SCORE_STEP, high))
        low_priority = tier + 1
    return ranges


def oldest_probe_ranges() -> list[tuple[int, float]]:
    """`:prioritized` score ranges whose lowest member is a candidate for the oldest prioritized job.

    The counter in a score is queue-wide and rises with each job entering `:prioritized`, so within one
    priority the lowest score is the job that entered first. Priorities 1..BACKGROUND get a range each;
    all higher priorities share one (its lowest member is the first of the most urgent of them).
    """
    ranges: list[tuple[int, float]] = [(p * PRIORITY_SCORE_STEP, (p + 1) * PRIORITY_SCORE_STEP - 1)
                                       for p in range(1, BACKGROUND + 1)]
    return ranges + [((BACKGROUND + 1) * PRIORITY_SCORE_STEP, float("inf"))]


def priority_of_score(score: float) -> int:
    """The priority encoded in a `:prioritized` score."""
    return int(score // PRIORITY_SCORE_STEP)


DEFAULT_TIMEOUT_REASONS = (
    re.escape(STALLED_REASON),
    r"\btim(?:ed|es)?[ _-]?out\b",
    r"\btimeout\b",
    r"TimeoutError",
    r"ETIMEDOUT",
)
DEFAULT_TIMEOUT_EXCEPTIONS = ("TimeoutError", "asyncio.TimeoutError", "asyncio.exceptions.TimeoutError",
                              "concurrent.futures.TimeoutError", "ETIMEDOUT")


@dataclass(frozen=True)
class TimeoutRule:
    """Which failures count as timeouts (BullMQ has no job timeout of its own).

    A failed job timed out when its failedReason matches one of `reason_patterns` (case-insensitive
    regexes), or when the exception named by its newest stacktrace entry is one of `exception_names`
    (the last line of a Python traceback, the first line of a Node stack). The defaults cover BullMQ's own
    "job stalled more than allowable limit", "timed out"/"timeout" texts, TimeoutError and ETIMEDOUT.
    """

    reason_patterns: Sequence[str] = DEFAULT_TIMEOUT_REASONS
    exception_names: Sequence[str] = DEFAULT_TIMEOUT_EXCEPTIONS
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(re.compile(p, re.IGNORECASE) for p in self.reason_patterns))

    def matches(self, failed_reason: str | None, stacktrace: str | None = None) -> bool:
        """Whether a failure with this failedReason (and `stacktrace` field, JSON list) is a timeout."""
        if failed_reason and any(pattern.search(failed_reason) for pattern in self._compiled):
            return True
        name = exception_name(stacktrace)
        return name is not None and name in self.exception_names


def exception_name(stacktrace: str | None) -> str | None:
    """The exception type of a job's newest stacktrace entry (`stacktrace` is a JSON list of strings)."""
    if not stacktrace:
        return None
    entries = parse_json(stacktrace)
    if entries is None:
        entries = [stacktrace]
    if not isinstance(entries, list) or not entries or not isinstance(entries[-1], str):
        return None
    lines = [line.strip() for line in entries[-1].strip().splitlines() if line.strip()]
    if not lines:
        return None
    python_style = lines[0].startswith("Traceback")
    line = lines[-1] if python_style else lines[0]
    name = line.split(":", 1)[0].strip()
    return name.removeprefix("builtins.") or None


@dataclass(frozen=True)
class ThroughputState:
    """Resume state of a queue's cumulative finish counters (stored as JSON in Cursor.state).

    `source` is "metrics" or "events"; `completed`/`failed` are the `:metrics:*` counts last seen (None when
    absent); `event_id` is the last `:events` entry counted or skipped; `distrust_metrics` is set once the
    metrics counted fewer finishes than the sets gained (a worker without the `metrics` option, or a stale hash).
    """

    source: str
    completed: int | None = None
    failed: int | None = None
    event_id: str | None = None
    distrust_metrics: bool = False

    def to_text(self) -> str:
        return json.dumps({"src": self.source, "c": self.completed, "f": self.failed, "ev": self.event_id,
                           "nm": self.distrust_metrics}, separators=(",", ":"))

    @classmethod
    def from_text(cls, raw: str | None) -> ThroughputState | None:
        """The state stored by a previous cycle; None when absent or unreadable."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("src") not in SOURCES:
            return None
        event_id = data.get("ev")
        return cls(data["src"], _int_or_none(data.get("c")), _int_or_none(data.get("f")),
                   event_id if isinstance(event_id, str) and parse_stream_id(event_id) else None,
                   data.get("nm") is True)


SOURCES = ("metrics", "events")


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_stream_id(value: str | None) -> tuple[int, int] | None:
    """A stream entry id `<ms>-<seq>` as a comparable pair; None if malformed."""
    if not value:
        return None
    ms, sep, seq = value.partition("-")
    try:
        return int(ms), int(seq) if sep else 0
    except ValueError:
        return None


def counter_delta(now: int | None, before: int | None) -> int:
    """Increase of a cumulative counter; a counter that went down was recreated, so all of it is new."""
    if now is None:
        return 0
    if before is None or now < before:
        return now
    return now - before


@dataclass
class EventTally:
    """What a run of `:events` entries says about finished jobs."""

    completed: int = 0
    failures: list[tuple[str, str | None]] = field(default_factory=list)
    last_id: str | None = None


def tally_events(entries: Iterable[tuple[object, object]]) -> EventTally:
    """Completed and failed (job id, failedReason) entries of an XRANGE reply; retries emit no `failed`."""
    tally = EventTally()
    for entry_id, payload in entries:
        tally.last_id = text(entry_id)
        fields = {text(k): text(v) for k, v in (payload or {}).items()}
        if fields.get("event") == "completed":
            tally.completed += 1
        elif fields.get("event") == "failed":
            tally.failures.append((fields.get("jobId") or "", fields.get("failedReason")))
    return tally


def events_start(prev: ThroughputState | None, *, count_all: bool, source: str) -> str | None:
    """Where a cycle reads `:events` from ("-" or "(<id>"), None when it uses the metrics counts."""
    if prev is None:
        return "-" if count_all and source != "metrics" else None
    if source == "metrics" or (source == "auto" and prev.source == "metrics"):
        return None
    return f"({prev.event_id}" if prev.event_id else "-"


@dataclass(frozen=True)
class CounterSnapshot:
    """What one atomic snapshot read of a queue's cumulative sources."""

    metrics: tuple[int | None, int | None]
    latest_event_id: str | None
    events: Sequence[tuple[object, object]] | None = None
    first_event_id: str | None = None
    set_gains: tuple[int, int] = (0, 0)
    """(completed, failed) entries above the sample cursors: finishes since the last cycle still in the sets."""


@dataclass(frozen=True)
class Throughput:
    """Finishes since the previous cycle and the state to resume from."""

    finished: int
    failed: int
    failures: list[tuple[str, str | None]] | None
    """(job id, failedReason) of every new failure when counted from events, else None."""
    state: ThroughputState
    source: str
    events_gap: bool = False


def advance_throughput(prev: ThroughputState | None, snap: CounterSnapshot, *, source: str, count_all: bool,
                       events_cap: int) -> Throughput:
    """New finishes from the cumulative sources, never counting one twice; see the reader's module docstring."""
    completed, failed = snap.metrics
    distrust = prev.distrust_metrics if prev else False
    has_metrics = completed is not None or failed is not None
    prefer_metrics = source == "metrics" or (source == "auto" and has_metrics and not distrust)
    if prev is None and not count_all:
        chosen = "metrics" if prefer_metrics else "events"
        return Throughput(0, 0, [], ThroughputState(chosen, completed, failed, snap.latest_event_id), chosen)
    if snap.events is not None and not (prev is None and prefer_metrics):
        tally = tally_events(snap.events)
        complete = len(snap.events) < events_cap
        last_id = tally.last_id or (prev.event_id if prev else None) or (snap.latest_event_id if complete else None)
        before, first = parse_stream_id(prev.event_id if prev else None), parse_stream_id(snap.first_event_id)
        gap = before is not None and first is not None and first > before
        chosen = "metrics" if prefer_metrics and complete else "events"
        state = ThroughputState(chosen, completed, failed, last_id, distrust)
        return Throughput(tally.completed, len(tally.failures), tally.failures, state, "events", gap)
    if source == "auto" and not has_metrics:
        state = ThroughputState("events", None, None, prev.event_id if prev else snap.latest_event_id, distrust)
        return Throughput(0, 0, None, state, "metrics")
    new_finished = counter_delta(completed, prev.completed if prev else None)
    new_failed = counter_delta(failed, prev.failed if prev else None)
    lagging = snap.set_gains[0] > new_finished or snap.set_gains[1] > new_failed
    next_source = "events" if lagging and source == "auto" else "metrics"
    state = ThroughputState(next_source, completed, failed, snap.latest_event_id, distrust or lagging)
    return Throughput(max(new_finished, snap.set_gains[0]), max(new_failed, snap.set_gains[1]), None, state,
                      "metrics")


@dataclass(frozen=True)
class WorkerClient:
    """A Redis connection named by a BullMQ worker."""

    queue: str
    worker_name: str | None
    flavor: str  # "node" (base64 queue name, one named connection) or "python" (plain name, two connections)


def worker_client(client_name: str, prefix: str, known_queues: Iterable[str]) -> WorkerClient | None:
    """The queue and worker name of a worker connection's client name, None for anything else.

    Node bullmq names its blocking connection `<prefix>:<base64(queue)>[:w:<name>]` and its QueueEvents
    `<prefix>:<base64(queue)>:qe`; Python bullmq names both worker connections `<prefix>:<queue>[:w:<name>]`.
    Known queue names are tried first (longest first) because queue names may contain `:` and `:w:`.
    """
    head = f"{prefix}:"
    if not client_name.startswith(head) or len(client_name) == len(head):
        return None
    rest = client_name[len(head):]
    for queue in sorted(set(known_queues), key=len, reverse=True):
        encoded = base64.b64encode(queue.encode()).decode()
        if rest == f"{encoded}{NODE_EVENTS_SUFFIX}":
            return None
        for flavor, label in (("python", queue), ("node", encoded)):
            if rest == label:
                return WorkerClient(queue, None, flavor)
            if rest.startswith(label + NAMED_WORKER_INFIX):
                return WorkerClient(queue, rest[len(label) + len(NAMED_WORKER_INFIX):] or None, flavor)
    label, infix, worker_name = rest.partition(NAMED_WORKER_INFIX)
    label_events = label.removesuffix(NODE_EVENTS_SUFFIX)
    if not infix and label_events != label and _from_base64(label_events) is not None:
        return None
    decoded = _from_base64(label)
    if decoded is not None:
        return WorkerClient(decoded, worker_name or None, "node")
    return WorkerClient(label, worker_name or None, "python") if label else None


def _from_base64(label: str) -> str | None:
    """The text a canonical base64 label encodes, None if it is not one."""
    if not label or len(label) % 4:
        return None
    try:
        decoded = base64.b64decode(label, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not decoded.isprintable() or base64.b64encode(decoded.encode()).decode() != label:
        return None
    return decoded


def client_host(addr: str | None) -> str | None:
    """The host part of a CLIENT LIST `addr` (`ip:port`, `[v6]:port`)."""
    if not addr:
        return None
    host, sep, _ = addr.rpartition(":")
    return (host if sep else addr).strip("[]") or None
