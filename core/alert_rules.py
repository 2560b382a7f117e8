"""Alert lifecycle as pure planning: open, escalate, de-escalate, update and resolve.

One alert at most is open per (queue, type). It opens when a threshold is crossed, moves between warning and
critical while the condition lasts (an escalation to critical clears an earlier acknowledgement, so the
worse news is seen), and resolves by itself when the figure is back under the warning level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol

from core.health import Breach


class OpenAlertLike(Protocol):
    id: str
    queue_name: str
    alert_type: str
    severity: str


@dataclass(frozen=True)
class OpenAlert:
    """The fields of a stored open alert that planning needs."""

    id: str
    queue_name: str
    alert_type: str
    severity: str


@dataclass(frozen=True)
class AlertChange:
    """One change to apply to the alerts table (and to record as an alert event)."""

    kind: str  # opened | escalated | deescalated | updated | resolved
    alert_id: str
    queue_name: str
    alert_type: str
    severity: str
    message: str | None = None
    value: float | None = None
    threshold: float | None = None


def alert_id(opened_at_s: float, queue_name: str, alert_type: str) -> str:
    """The spec's alert id: alert-<epoch seconds>-<queue>-<type>."""
    return f"alert-{int(opened_at_s)}-{queue_name}-{alert_type}"


def plan(open_alerts: Iterable[OpenAlertLike], breaches: Mapping[str, list[Breach]], now_s: float, *,
         resolve_unseen: bool = True) -> list[AlertChange]:
    """Changes that bring the open alerts in line with this cycle's breaches (keyed by queue name).

    An open alert of a queue that was not evaluated this cycle resolves only when `resolve_unseen` is true
    (every backend was read, so the queue is gone); otherwise it is left as it is.
    """
    current = {(a.queue_name, a.alert_type): a for a in open_alerts}
    changes: list[AlertChange] = []
    seen: set[tuple[str, str]] = set()
    for queue_name, queue_breaches in breaches.items():
        for breach in queue_breaches:
            key = (queue_name, breach.alert_type.value)
            seen.add(key)
            existing = current.get(key)
            severity = breach.severity.value
            fields = dict(queue_name=queue_name, alert_type=breach.alert_type.value, severity=severity,
                          message=breach.message, value=breach.value, threshold=breach.threshold)
            if existing is None:
                changes.append(AlertChange("opened", alert_id(now_s, *key), **fields))
            elif existing.severity != severity:
                kind = "escalated" if severity == "critical" else "deescalated"
                changes.append(AlertChange(kind, existing.id, **fields))
            else:
                changes.append(AlertChange("updated", existing.id, **fields))
    for key, existing in current.items():
        if key not in seen and (resolve_unseen or existing.queue_name in breaches):
            changes.append(AlertChange("resolved", existing.id, existing.queue_name, existing.alert_type,
                                       existing.severity))
    return changes
