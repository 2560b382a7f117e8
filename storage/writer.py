"""Writes: one collection cycle per transaction, outages, acknowledgements."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from sqlalchemy import Boolean, Connection, Engine, Float, Integer, String, Table, and_, select, update
from sqlalchemy.exc import SQLAlchemyError

from core.problems import ProblemLog
from core.values import INT64_MAX, INT64_MIN
from storage.alert_state import lock_alerts, rule_states, save_rule_states, upkeep
from storage.engine import StorageError, error_text
from storage.failures import DEFAULT_FAILURES_KEPT, write_failures
from storage.layout import CURSOR_COLUMNS, blob_values, sample_values, series_ids
from storage.partitions import ensure_days
from storage.rollups import add_to_rollups, upsert
from storage.schema import (
    alert_events, alerts, cycles, host_snapshots, queue_latest, queue_sample_blobs, queue_samples,
    queue_snapshots, worker_snapshots,
)


class AlertChangeLike(Protocol):
    kind: str
    alert_id: str
    queue_name: str
    alert_type: str
    severity: str
    message: str | None
    value: float | None
    threshold: float | None


class PlanLike(Protocol):
    changes: Sequence[AlertChangeLike]
    states: Any  # Mapping[(queue, type), RuleState | None]


@dataclass(frozen=True)
class OpenAlertRow:
    id: str
    queue_name: str
    alert_type: str
    severity: str


@dataclass
class CycleRecord:
    """Everything one successful cycle stores."""

    started_at_s: float
    finished_at_s: float
    round_trips: int
    queue_rows: list[dict[str, Any]] = field(default_factory=list)
    worker_rows: list[dict[str, Any]] = field(default_factory=list)
    host_row: dict[str, Any] | None = None
    failures: list[Any] = field(default_factory=list)  # core.failures.FailureRecord of the sampled failed jobs
    failures_kept: int = DEFAULT_FAILURES_KEPT  # per queue


AlertPlanner = Callable[[list[OpenAlertRow]], Sequence[AlertChangeLike]]
RulePlanner = Callable[[list[OpenAlertRow], list[Any]], PlanLike]  # (open alerts, stored RuleStates) -> Plan


def bounded_row(table: Table, row: dict[str, Any], problems: ProblemLog) -> dict[str, Any]:
    """A row every database accepts: integers within signed 64 bits, finite floats, strings within their
    column's length and without NUL. A value out of bounds is NULL where the column allows it, else clamped
    (integers) or 0 (floats), and is reported; the readers' parsing (core.values) normally stops such
    values before they get here."""
    bounded = dict(row)
    for name, value in row.items():
        column = table.columns.get(name)
        if column is None or value is None:
            continue
        kind = column.type
        fixed = value
        if isinstance(kind, Boolean):
            continue
        if isinstance(kind, Integer):
            if isinstance(value, float) and math.isfinite(value):
                fixed = int(value)
            if not isinstance(fixed, int) or not INT64_MIN <= fixed <= INT64_MAX:
                fixed = None if column.nullable else (
                    min(max(fixed, INT64_MIN), INT64_MAX) if isinstance(fixed, int) else 0)
        elif isinstance(kind, Float):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                fixed = None if column.nullable else 0.0
        elif isinstance(kind, String) and isinstance(value, str):
            fixed = value.replace("\x00", "\ufffd")
            if kind.length is not None and len(fixed) > kind.length:
                fixed = fixed[:kind.length]
        if fixed is not value and fixed != value:
            problems.report(f"{table.name}.{name}", f"value {str(value)[:80]!r} stored as {fixed!r}")
            bounded[name] = fixed
    return bounded


Fence = Callable[[Connection], set[str]]
"""Inside a write: the targets whose rows may be stored (rows name theirs under "target"; shared collectors)."""


def _fenced(rows: list[dict[str, Any]], accepted: set[str] | None) -> list[dict[str, Any]]:
    """The rows of accepted targets (all rows when not fenced), without their "target" key."""
    kept = [row for row in rows if accepted is None or row.get("target") in accepted]
    return [{k: v for k, v in row.items() if k != "target"} for row in kept]


def write_cycle(engine: Engine, record: CycleRecord, plan_alerts: AlertPlanner | None = None, *,
                plan_rules: RulePlanner | None = None, problems: ProblemLog | None = None,
                fence: Fence | None = None) -> list[AlertChangeLike]:
    """Store a cycle and apply its alert changes atomically; returns the changes applied.

    `plan_rules` plans with the stored alert timers and gets them stored; `plan_alerts` plans without.
    Either way the write ends with ended snoozes and the silences in force applied to the open alerts.
    With `fence`, only the rows of the targets it returns are stored (it runs first, in the transaction).
    """
    problems = problems or ProblemLog()
    try:
        ensure_days(engine, record.finished_at_s)
        with engine.begin() as conn:
            accepted = fence(conn) if fence is not None else None
            queue_rows = _fenced(record.queue_rows, accepted)
            worker_rows = _fenced(record.worker_rows, accepted)
            cycle_id = conn.execute(cycles.insert().values(
                started_at_s=record.started_at_s, finished_at_s=record.finished_at_s, ok=True,
                round_trips=record.round_trips, queue_count=len(queue_rows),
            )).inserted_primary_key[0]
            write_queue_rows(conn, [bounded_row(queue_snapshots, row, problems) for row in queue_rows], cycle_id)
            write_failures(conn, record.failures, record.failures_kept)
            if worker_rows:
                conn.execute(worker_snapshots.insert(), [{**bounded_row(worker_snapshots, row, problems),
                                                          "cycle_id": cycle_id} for row in worker_rows])
            if record.host_row:
                conn.execute(host_snapshots.insert().values(**bounded_row(host_snapshots, record.host_row, problems),
                                                            cycle_id=cycle_id))
            changes = _plan_and_apply(conn, record.finished_at_s, plan_alerts, plan_rules)
    except SQLAlchemyError as exc:
        engine.dispose()  # the next try opens the file anew: one opened read-only stays so while pooled
        raise StorageError(f"could not store the cycle: {error_text(exc)}") from exc
    return changes


def write_queue_rows(conn: Connection, rows: Sequence[dict[str, Any]], cycle_id: int) -> None:
    """Store one cycle's queue snapshots: raw rows, their sketches, each queue's latest row and the rollups."""
    if not rows:
        return
    ids = series_ids(conn, ((row["library"], row["queue_name"]) for row in rows))
    samples, blobs, latest = [], [], []
    for row in rows:
        series_id = ids[(row["library"], row["queue_name"])]
        sample = sample_values(row, series_id, cycle_id)
        samples.append(sample)
        latest.append({**sample, **{name: row.get(name) for name in CURSOR_COLUMNS}})
        blob = blob_values(row, series_id)
        if blob is not None:
            blobs.append(blob)
    keys = ("series_id", "sampled_at_ms")
    upsert(conn, queue_samples, samples, keys)
    upsert(conn, queue_sample_blobs, blobs, keys)
    upsert(conn, queue_latest, latest, ("series_id",), unless_older="sampled_at_ms")
    add_to_rollups(conn, [{**sample, "processing_sketch": row.get("processing_sketch"),
                           "wait_sketch": row.get("wait_sketch")} for sample, row in zip(samples, rows)])


def _plan_and_apply(conn: Connection, now_s: float, plan_alerts: AlertPlanner | None,
                    plan_rules: RulePlanner | None) -> list[AlertChangeLike]:
    lock_alerts(conn)
    if plan_rules is not None:
        plan = plan_rules(open_alerts(conn), rule_states(conn))
        changes = apply_alert_changes(conn, plan.changes, now_s)
        save_rule_states(conn, plan.states, now_s)
    else:
        changes = apply_alert_changes(conn, plan_alerts(open_alerts(conn)) if plan_alerts else [], now_s)
    upkeep(conn, now_s)
    return changes


def write_alerts(engine: Engine, now_s: float, plan_rules: RulePlanner, *,
                 fence: Fence | None = None) -> list[AlertChangeLike]:
    """Plan and apply alert changes without a cycle (system alerts raised outside the collector)."""
    try:
        with engine.begin() as conn:
            if fence is not None:
                fence(conn)
            return _plan_and_apply(conn, now_s, None, plan_rules)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(f"could not store alert changes: {error_text(exc)}") from exc


def record_outage(engine: Engine, started_at_s: float, finished_at_s: float, error: str) -> None:
    """Store a failed cycle so that gaps in the charts are explained."""
    try:
        with engine.begin() as conn:
            conn.execute(cycles.insert().values(started_at_s=started_at_s, finished_at_s=finished_at_s, ok=False,
                                                error=error[:2000], round_trips=0, queue_count=0))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(f"could not record the outage: {error_text(exc)}") from exc


def open_alerts(conn: Connection) -> list[OpenAlertRow]:
    rows = conn.execute(select(alerts.c.id, alerts.c.queue_name, alerts.c.alert_type, alerts.c.severity)
                        .where(alerts.c.resolved_at_s.is_(None)))
    return [OpenAlertRow(*row) for row in rows]


def _free_id(conn: Connection, alert_id: str) -> str:
    """The spec's ids have one-second resolution; a reopen within the same second gets a suffix."""
    candidate, n = alert_id, 1
    while conn.execute(select(alerts.c.id).where(alerts.c.id == candidate)).first() is not None:
        n += 1
        candidate = f"{alert_id}-{n}"
    return candidate


def apply_alert_changes(conn: Connection, changes: Sequence[AlertChangeLike],
                        now_s: float) -> list[AlertChangeLike]:
    """Apply planned changes; returns them as applied (an opened alert may get a de-duplicated id)."""
    applied = []
    for change in changes:
        if change.kind == "opened":
            change = dataclasses.replace(change, alert_id=_free_id(conn, change.alert_id))
            conn.execute(alerts.insert().values(
                id=change.alert_id, queue_name=change.queue_name, alert_type=change.alert_type,
                severity=change.severity, message=change.message, value=change.value,
                threshold=change.threshold, opened_at_s=now_s, updated_at_s=now_s, acknowledged=False,
                library=getattr(change, "library", None)))
        elif change.kind == "resolved":
            conn.execute(update(alerts).where(alerts.c.id == change.alert_id)
                         .values(resolved_at_s=now_s, updated_at_s=now_s))
        else:
            values = dict(severity=change.severity, message=change.message, value=change.value,
                          threshold=change.threshold, updated_at_s=now_s)
            if change.kind == "escalated":
                values.update(acknowledged=False, acknowledged_by=None, acknowledged_at_s=None,
                              acknowledged_until_s=None)
            conn.execute(update(alerts).where(alerts.c.id == change.alert_id).values(**values))
        if change.kind != "updated":
            conn.execute(alert_events.insert().values(alert_id=change.alert_id, at_s=now_s, event=change.kind,
                                                      severity=change.severity, value=change.value))
        applied.append(change)
    return applied


def holds(row: Any, now_s: float) -> bool:
    """Whether an alerts row's acknowledgement holds at `now_s` (an acknowledgement "for" a while ends)."""
    until_s = row["acknowledged_until_s"]
    return bool(row["acknowledged"]) and (until_s is None or until_s > now_s)


def _acknowledge(conn: Connection, alert_id: str, user: str, now_s: float,
                 until_s: float | None) -> dict[str, Any] | None:
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    if row is None:
        return None
    if not holds(row, now_s):
        conn.execute(update(alerts).where(alerts.c.id == alert_id)
                     .values(acknowledged=True, acknowledged_by=user, acknowledged_at_s=now_s,
                             acknowledged_until_s=until_s))
        conn.execute(alert_events.insert().values(alert_id=alert_id, at_s=now_s, event="acknowledged",
                                                  severity=row["severity"], value=row["value"], actor=user))
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    return dict(row)


def acknowledge_alert(engine: Engine, alert_id: str, user: str, now_s: float, *,
                      until_s: float | None = None) -> dict[str, Any] | None:
    """Mark an alert acknowledged by `user` (until `until_s`, or for good); idempotent while it holds (the
    first acknowledgement is kept). None if the id is unknown."""
    with engine.begin() as conn:
        return _acknowledge(conn, alert_id, user, now_s, until_s)


def acknowledge_alerts(engine: Engine, alert_ids: Sequence[str], user: str, now_s: float, *,
                       until_s: float | None = None) -> dict[str, dict[str, Any] | None]:
    """Acknowledge several alerts in one transaction; each id maps to its row (None: unknown id)."""
    with engine.begin() as conn:
        return {alert_id: _acknowledge(conn, alert_id, user, now_s, until_s) for alert_id in dict.fromkeys(alert_ids)}
