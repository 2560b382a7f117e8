"""Alert lifecycle as pure planning: pending, open, escalate, de-escalate, update, keep firing and resolve.

One alert at most is open per (queue, type). A breach is *pending* until it has held for `pending_s`; only
then does the alert open. It moves between warning and critical while the condition lasts (an escalation to
critical clears an earlier acknowledgement, so the worse news is seen). Once the figure is back under the
warning level the alert keeps firing for `keep_firing_s` and then resolves; a breach back within that time
continues the same alert. Timers are passed in and handed back (`RuleState`) so that they can be stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Protocol

from core.health import Severity

Key = tuple[str, str]  # (queue name or system scope, alert type)


class OpenAlertLike(Protocol):
    id: str
    queue_name: str
    alert_type: str
    severity: str


class BreachLike(Protocol):
    """A queue's health.Breach or a system_alerts.SystemBreach."""

    @property
    def alert_type(self) -> Any: ...  # an enum whose .value is the stored type
    severity: Severity
    value: float
    threshold: float

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class OpenAlert:
    """The fields of a stored open alert that planning needs."""

    id: str
    queue_name: str
    alert_type: str
    severity: str


@dataclass(frozen=True)
class AlertTiming:
    """How long a breach must hold before it is an alert, how long an alert outlives its condition, and
    how many jobs must have ended in the rate window before error and timeout rates are judged."""

    pending_s: float = 0.0
    keep_firing_s: float = 0.0
    min_jobs: float = 0.0

    def validate(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True)
class AlertTimings:
    """Global alert timing with per-queue overrides."""

    default: AlertTiming = field(default_factory=AlertTiming)
    per_queue: Mapping[str, AlertTiming] = field(default_factory=dict)

    def for_queue(self, queue_name: str) -> AlertTiming:
        return self.per_queue.get(queue_name, self.default)


@dataclass(frozen=True)
class RuleState:
    """The stored timers of one (queue, type): since when it breaches without an alert (pending), since when
    its alert's condition is clear (keep firing), and the newest pending breach's figures (for display)."""

    queue_name: str
    alert_type: str
    pending_since_s: float | None = None
    clear_since_s: float | None = None
    severity: str | None = None
    message: str | None = None
    value: float | None = None
    threshold: float | None = None
    library: str | None = None


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
    library: str | None = None


@dataclass
class Plan:
    """A cycle's alert changes and the timers to store: `states[key]` None deletes the stored timers."""

    changes: list[AlertChange] = field(default_factory=list)
    states: dict[Key, RuleState | None] = field(default_factory=dict)


def alert_id(opened_at_s: float, queue_name: str, alert_type: str) -> str:
    """The spec's alert id: alert-<epoch seconds>-<queue>-<type>."""
    return f"alert-{int(opened_at_s)}-{queue_name}-{alert_type}"


def plan(open_alerts: Iterable[OpenAlertLike], breaches: Mapping[str, list[BreachLike]], now_s: float, *,
         resolve_unseen: bool = True) -> list[AlertChange]:
    """Changes without timing (an alert opens on its first breach and resolves on its first clear cycle)."""
    return plan_cycle(open_alerts, breaches, now_s, resolve_unseen=resolve_unseen).changes


def plan_cycle(open_alerts: Iterable[OpenAlertLike], breaches: Mapping[str, list[BreachLike]], now_s: float, *,
               states: Iterable[RuleState] = (), timings: AlertTimings = AlertTimings(),
               resolve_unseen: bool = True, libraries: Mapping[str, str] | None = None,
               scopes: Iterable[str] | None = None) -> Plan:
    """Changes and timers that bring the open alerts in line with this cycle's breaches (keyed by queue name).

    Every queue in `breaches` was evaluated this cycle (an empty list: nothing breached). An open alert or
    timer of a queue that was not evaluated is left as it is, unless `resolve_unseen` (every backend was read,
    so the queue is gone): then its alert resolves and its timers go. `scopes`, when given, limits planning
    to those queue names (system alerts are planned apart from queue alerts).
    """
    allowed = set(scopes) if scopes is not None else None
    current = {(a.queue_name, a.alert_type): a for a in open_alerts
               if allowed is None or a.queue_name in allowed}
    stored = {(s.queue_name, s.alert_type): s for s in states if allowed is None or s.queue_name in allowed}
    libraries = libraries or {}
    result = Plan()
    seen: set[Key] = set()
    for queue_name, queue_breaches in breaches.items():
        timing = timings.for_queue(queue_name)
        for breach in queue_breaches:
            key = (queue_name, breach.alert_type.value)
            seen.add(key)
            _plan_breach(result, key, breach, current.get(key), stored.get(key), timing, now_s,
                         libraries.get(queue_name))
    for key in (set(current) | set(stored)) - seen:
        existing, state = current.get(key), stored.get(key)
        if key[0] in breaches:
            _plan_clear(result, key, existing, state, timings.for_queue(key[0]), now_s)
        elif resolve_unseen:
            if existing is not None:
                result.changes.append(_resolved(existing))
            result.states[key] = None
    return result


def _plan_breach(result: Plan, key: Key, breach: BreachLike, existing: OpenAlertLike | None,
                 state: RuleState | None, timing: AlertTiming, now_s: float, library: str | None) -> None:
    severity = breach.severity.value
    fields = dict(queue_name=key[0], alert_type=key[1], severity=severity, message=breach.message,
                  value=breach.value, threshold=breach.threshold, library=library)
    if existing is not None:
        if existing.severity != severity:
            kind = "escalated" if severity == "critical" else "deescalated"
            result.changes.append(AlertChange(kind, existing.id, **fields))
        else:
            result.changes.append(AlertChange("updated", existing.id, **fields))
        if state is not None:
            result.states[key] = None  # the condition is back: no clear-since any more
        return
    since_s = state.pending_since_s if state is not None and state.pending_since_s is not None else now_s
    if now_s - since_s >= timing.pending_s:
        result.changes.append(AlertChange("opened", alert_id(now_s, *key), **fields))
        result.states[key] = None
    else:
        result.states[key] = RuleState(*key, pending_since_s=since_s, severity=severity, message=breach.message,
                                       value=breach.value, threshold=breach.threshold, library=library)


def _plan_clear(result: Plan, key: Key, existing: OpenAlertLike | None, state: RuleState | None,
                timing: AlertTiming, now_s: float) -> None:
    if existing is None:  # a pending breach that cleared before pending_s never becomes an alert
        result.states[key] = None
        return
    since_s = state.clear_since_s if state is not None and state.clear_since_s is not None else now_s
    if now_s - since_s >= timing.keep_firing_s:
        result.changes.append(_resolved(existing))
        result.states[key] = None
    elif state is None or state.clear_since_s != since_s or state.pending_since_s is not None:
        result.states[key] = replace(state or RuleState(*key), pending_since_s=None, clear_since_s=since_s)


def _resolved(existing: OpenAlertLike) -> AlertChange:
    return AlertChange("resolved", existing.id, existing.queue_name, existing.alert_type, existing.severity)
