from __future__ import annotations

from sqlalchemy import func, select

from storage.retention import purge
from storage.schema import alerts, cycles, host_snapshots, queue_snapshots, worker_snapshots
from tests.storage.test_writer import _cycle


def _counts(engine):
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (cycles, queue_snapshots, worker_snapshots, host_snapshots, alerts)}


def test_removes_exactly_the_rows_older_than_the_cutoff(engine):
    for i in range(30):  # 30 cycles 10 s apart, 3 queues each; an alert opens at 150 and resolves at 200
        now_s = 10.0 * (i + 1)
        depth = 500 if 150 <= now_s < 200 else 1
        _cycle(engine, now_s, a=depth, b=2, c=3)
    before = _counts(engine)
    assert before["queue_snapshots"] == 90 and before["alerts"] == 1
    removed = purge(engine, cutoff_s=105.0, batch_rows=7)  # small batches: many short transactions
    assert removed["queue_snapshots"] == 30  # snapshots at 10..100
    assert removed["cycles"] == 10
    assert removed["alerts"] == 0  # resolved at 200, after the cut-off
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(queue_snapshots.c.sampled_at_s))).scalar_one()
    assert oldest == 110.0
    assert _counts(engine)["queue_snapshots"] == 60
    removed = purge(engine, cutoff_s=205.0)
    assert removed["alerts"] == 1 and _counts(engine)["alerts"] == 0
    assert purge(engine, cutoff_s=205.0) == {k: 0 for k in removed}
