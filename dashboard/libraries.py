"""What differs between RQ, BullMQ and Celery on the pages: names, figures a library cannot measure, why."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.priorities import TIER_NAMES, TIERS
from dashboard.formatting import markdown_text

LIBRARIES: tuple[str, ...] = ("rq", "bullmq", "celery")
LIBRARY_NAMES = {"rq": "RQ", "bullmq": "BullMQ", "celery": "Celery"}
NOT_AVAILABLE = "n/a"
ALL_LIBRARIES = "All libraries"
TIER_LABELS: dict[int, str] = {tier: f"{TIER_NAMES[tier]} ({tier})" for tier in TIERS}
FIELD_LABELS: dict[str, str] = {
    "waiting": "waiting", "active": "active", "delayed": "delayed", "failed": "failed",
    "completed": "completed", "jobsPerMinute": "jobs/min", "errorRate": "error rate",
    "timeoutRate": "timeout rate", "avgProcessingTimeMs": "avg processing time",
    "p50ProcessingTimeMs": "p50 processing time", "p95ProcessingTimeMs": "p95 processing time",
    "p99ProcessingTimeMs": "p99 processing time", "oldestWaitingMs": "oldest waiting age",
    "memoryUsageMB": "worker memory", "memoryPercentage": "memory percentage",
}
TIMING_FIELDS = frozenset({"jobsPerMinute", "errorRate", "timeoutRate", "avgProcessingTimeMs",
                           "p50ProcessingTimeMs", "p95ProcessingTimeMs", "p99ProcessingTimeMs"})
PROCESSING_FIELDS = frozenset({"avgProcessingTimeMs", "p50ProcessingTimeMs", "p95ProcessingTimeMs",
                               "p99ProcessingTimeMs"})
DOCS: dict[str, str] = {"celery": "docs/celery.md", "bullmq": "docs/memory.md"}

# (fields, why, a field that must be among the unmeasured ones for this reason to apply, or None)
_REASONS: dict[str, tuple[tuple[frozenset[str], str, str | None], ...]] = {
    "celery": (
        (frozenset({"failed", "completed"}), "Celery keeps no per-queue store of failed or completed tasks",
         None),
        (TIMING_FIELDS, ("no task events arrive from the workers (start them with `-E`, or set "
                         "`worker_send_task_events = True`)"), "jobsPerMinute"),
        (frozenset({"oldestWaitingMs"}), ("the oldest message carries no `qw_published_at` header and no "
                                          "task-sent event was seen (`task_send_sent_event = True`)"), None),
    ),
    "bullmq": (
        (frozenset({"memoryUsageMB", "memoryPercentage"}), ("BullMQ records no worker pids, so only workers "
                                                            "running the queuewatch agent report memory"),
         None),
    ),
}
# Reasons that hold for every library, after its own.
_COMMON_REASONS: tuple[tuple[frozenset[str], str, str | None], ...] = (
    (frozenset({"errorRate", "timeoutRate"}), "no job ended in the last 5 min", None),
    (frozenset({"memoryUsageMB", "memoryPercentage"}),
     "no live worker of the queue has its memory measured (workers on other hosts need the queuewatch agent)",
     None),
    (frozenset({"oldestWaitingMs"}), "no waiting job's enqueue time could be read", None),
)


_KNOWN_LABELS = frozenset(FIELD_LABELS.values()) | {"processing time (p50, p95, p99)"}


@dataclass(frozen=True)
class Reason:
    """Figures a backend could not measure, with why."""

    labels: tuple[str, ...]
    why: str


def label_of(queue_name: str, library: str) -> str:
    """How a queue is named in selects: "emails · rq"."""
    return f"{queue_name} · {library}"


def library_name(library: str) -> str:
    """How a library is written in sentences ("BullMQ")."""
    return LIBRARY_NAMES.get(library, library)


def field_labels(fields: Iterable[str]) -> list[str]:
    """Display labels of QueueMetrics fields in FIELD_LABELS order, several processing times as one label
    ("processing time (p50, p95, p99)"); unknown names last, as they are."""
    wanted = set(fields)
    processing = [field for field in FIELD_LABELS if field in wanted & PROCESSING_FIELDS]
    labels = []
    for field, label in FIELD_LABELS.items():
        if field not in wanted:
            continue
        if len(processing) > 1 and field in PROCESSING_FIELDS:
            if field == processing[0]:
                parts = ", ".join(FIELD_LABELS[f].split(" ")[0] for f in processing)
                labels.append(f"processing time ({parts})")
            continue
        labels.append(label)
    return labels + sorted(wanted - set(FIELD_LABELS))


def reasons(library: str, fields: Iterable[str]) -> list[Reason]:
    """The unavailable fields grouped by why the library cannot measure them."""
    left = set(fields)
    found = []
    for group, why, requires in (*_REASONS.get(library, ()), *_COMMON_REASONS):
        if left & group and (requires is None or requires in left):
            found.append(Reason(tuple(field_labels(left & group)), why))
            left -= group
    if left:
        why = f"the {library_name(library)} backend did not report them"
        found.append(Reason(tuple(field_labels(left)), why))
    return found


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def explain(library: str, fields: Iterable[str]) -> str:
    """One markdown sentence per reason, then where the library's docs say more (names read from the
    database, such as an unknown library or field, as plain text)."""
    def shown(label: str) -> str:
        return label if label in _KNOWN_LABELS else markdown_text(label)

    why_shown = (lambda why: why) if library in LIBRARY_NAMES else markdown_text
    parts = [_capitalised(f"{', '.join(map(shown, reason.labels))}: {why_shown(reason.why)}.")
             for reason in reasons(library, fields)]
    if parts and library in DOCS:
        parts.append(f"See `{DOCS[library]}`.")
    return " ".join(parts)
