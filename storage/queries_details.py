"""Library-specific figures of a snapshot (its `details` JSON), parsed into plain values."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.priorities import TIERS
from storage.queries_common import is_missing


@dataclass(frozen=True)
class BullMQDetails:
    """What a BullMQ queue shows beyond QueueMetrics, as of one snapshot."""

    paused: bool
    priority_counts: dict[int, int]  # waiting jobs per tier, every tier of TIERS present (0 when none)
    stalled: int | None
    prefix: str | None
    throughput_source: str | None  # "metrics" or "events"
    events_gap: bool


def details_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot's details as a dict ({} when none were stored or they are not a JSON object)."""
    raw = row.get("details")
    if is_missing(raw) or not str(raw).strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _count(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def bullmq_details(row: Mapping[str, Any]) -> BullMQDetails | None:
    """BullMQ details of a snapshot row; None for other libraries or a row without details."""
    details = details_of(row)
    if row.get("library") != "bullmq" or not details:
        return None
    stored = details.get("priority_counts") or {}
    counts = {tier: 0 for tier in TIERS}
    if isinstance(stored, dict):
        for tier, count in stored.items():
            if _count(tier) in counts:
                counts[int(tier)] += _count(count) or 0
    source = details.get("throughput_source")
    prefix = details.get("prefix")
    return BullMQDetails(paused=bool(details.get("paused")), priority_counts=counts,
                         stalled=_count(details.get("stalled")),
                         prefix=None if prefix is None else str(prefix),
                         throughput_source=None if source is None else str(source),
                         events_gap=bool(details.get("events_gap")))
