"""Capacity figures from stored snapshots: the flow window over a real database written through the writer."""
from __future__ import annotations

import time

import pytest

from core.capacity import FlowWindow, workers_for_wait
from storage.queries_capacity import all_capacity, flow_windows, queue_advice
from tests.storage.test_baseline_history import _row, _write


def test_flow_window_and_advice_from_stored_snapshots(engine):
    now_s = time.time()
    for offset_s, waiting in ((-20.0, 30), (-10.0, 40), (0.0, 50)):  # 10 jobs ended per snapshot, active 1
        _write(engine, now_s + offset_s, [_row("pay", now_s + offset_s, waiting, run_ms=500.0)])
    _write(engine, now_s - 400.0, [_row("old", now_s - 400.0, 5)])  # outside the window: not measured
    windows = flow_windows(engine, now_s + 0.5)
    assert windows[("rq", "pay")] == FlowWindow(window_s=pytest.approx(20.0), backlog_start=31, backlog_end=51,
                                                ended=20, mean_active=1.0)
    assert ("rq", "old") not in windows

    advice = queue_advice(engine, "pay", wait_target_s=2.0, now_s=now_s + 0.5)
    capacity = advice["capacity"]
    assert capacity["arrival_per_s"] == pytest.approx(40 / 20.0)  # 20 ended + 20 more waiting over 20 s
    assert capacity["completion_per_s"] == pytest.approx(1.0) and capacity["growing"]
    assert capacity["mean_run_s"] == pytest.approx(0.5, rel=0.02)
    assert capacity["workers_needed"] == workers_for_wait(2.0, capacity["mean_run_s"], 2.0)
    assert advice["timeout"]["configured_s"] is None and advice["timeout"]["verdict"] is None  # none stored
    assert advice["timeout"]["suggested_s"] == 1.0  # p99.9 0.5 s × 1.5, rounded up
    assert queue_advice(engine, "nope", wait_target_s=2.0) is None
    rows = {row["queue_name"]: row for row in all_capacity(engine, wait_target_s=2.0, now_s=now_s + 0.5)}
    assert rows["pay"]["workers_needed"] == capacity["workers_needed"]
    assert rows["old"]["arrival_per_s"] is None and rows["old"]["drain_text"] == "n/a"
