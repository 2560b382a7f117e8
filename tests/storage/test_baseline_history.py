""""Is this normal?" over a real SQLite file written through the writer: a spike is flagged, normal variation not."""
from __future__ import annotations

import time

from sqlalchemy import func, select

from core.derive import QueueWindow, snapshot_row
from core.health import ThresholdSet
from core.model import Cursor, FinishedJob, QueueReading
from storage.queries_baseline import baseline_history, unusual_queues
from storage.queries_latest import latest_snapshots
from storage.schema import queue_rollups
from storage.writer import CycleRecord, write_cycle

USUAL_WAITING = [100, 104, 97, 110, 95, 102, 99, 101, 108, 93, 100, 106, 98, 103]


def _row(name: str, at_s: float, waiting: int, run_ms: float = 200.0, failed: int = 0) -> dict:
    jobs = [FinishedJob(f"{name}-{at_s}-{i}", i < failed, False, at_s - 2.0, at_s - 1.0, at_s - 1.0 + run_ms / 1000.0)
            for i in range(10)]
    reading = QueueReading(queue_name=name, library="rq", waiting=waiting, active=1, scheduled=0, deferred=0,
                           failed=failed, completed=10 - failed, oldest_enqueued_at_s=at_s - 5, cursor=Cursor(1.0, 1.0),
                           new_finished=10 - failed, new_failed=failed, sampled_jobs=jobs)
    row, _, _ = snapshot_row(reading, QueueWindow(), now_s=at_s, interval_s=10.0, memory_usage_mb=None,
                             thresholds=ThresholdSet())
    return row


def _write(engine, at_s: float, rows: list[dict]) -> None:
    write_cycle(engine, CycleRecord(at_s, at_s, 1, rows))


def test_spike_flagged_and_normal_variation_not(engine):
    now_s = time.time()
    for day, waiting in enumerate(USUAL_WAITING, start=1):
        at_s = now_s - day * 86400
        _write(engine, at_s, [_row("spiky", at_s, waiting), _row("steady", at_s, waiting),
                              _row("erring", at_s, waiting, failed=0)])
    _write(engine, now_s, [_row("spiky", now_s, 900), _row("steady", now_s, 112),
                           _row("erring", now_s, 101, failed=6)])
    with engine.connect() as conn:
        hourly = conn.execute(select(func.count()).select_from(queue_rollups)
                              .where(queue_rollups.c.level_s == 3600)).scalar_one()
    assert hourly == 3 * (len(USUAL_WAITING) + 1)  # the history went through the real write path

    history = baseline_history(engine, now_s)
    assert sorted(history[("rq", "spiky")]["waiting"].values()) == sorted(float(v) for v in USUAL_WAITING)
    flagged = unusual_queues(latest_snapshots(engine), history, now_s)
    assert [name for _, name, _ in flagged] == ["erring", "spiky"]  # error rate 60 % vs 0: infinite score
    _, _, spiky = flagged[1]
    assert [u.figure for u in spiky] == ["waiting"]
    assert spiky[0].value == 900 and spiky[0].usual.median == 100.5 and spiky[0].usual.basis == "days"
    _, _, erring = flagged[0]
    assert [u.figure for u in erring] == ["error_rate_pct"] and erring[0].value == 60.0


def test_without_history_nothing_is_flagged(engine):
    now_s = time.time()
    _write(engine, now_s, [_row("young", now_s, 5000)])
    assert unusual_queues(latest_snapshots(engine), baseline_history(engine, now_s), now_s) == []
