"""Capacity and timeout advice: the formulas against hand arithmetic and an independent Erlang C."""
from __future__ import annotations

import math

import pytest

from core.capacity import (
    FlowWindow, capacity, drain_text, duration_text, erlang_c, nice_ceiling, timeout_advice, wait_exceeds_probability,
    workers_for_wait,
)


def erlang_c_by_factorials(c: int, a: float) -> float:
    """Erlang C from its textbook sum (an independent check of the recursion)."""
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("c,a", [(2, 1.0), (3, 2.0), (5, 4.2), (10, 7.5), (1, 0.3)])
def test_erlang_c_matches_the_textbook_sum(c, a):
    assert erlang_c(c, a) == pytest.approx(erlang_c_by_factorials(c, a), rel=1e-12)


def test_erlang_c_known_value_and_limits():
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(2, 5.0) == 1.0  # no steady state: every job waits
    assert erlang_c(4, 0.0) == 0.0


def test_workers_for_wait_is_the_smallest_count_meeting_the_p95():
    # λ = 2/s, S = 1 s: a = 2; with 3 workers P(W > 1 s) = 0.1635, with 4 it is 0.0235 (≤ 5 %)
    assert wait_exceeds_probability(3, 2.0, 1.0, 1.0) == pytest.approx(4 / 9 * math.exp(-1), rel=1e-9)
    assert workers_for_wait(2.0, 1.0, 1.0) == 4
    # a generous target needs only one worker more than the load
    assert workers_for_wait(2.0, 1.0, 3600.0) == 3
    assert workers_for_wait(0.0, 1.0, 60.0) == 0
    for arrival, run_s, target in ((0.5, 0.2, 1.0), (30.0, 0.5, 5.0), (100.0, 2.0, 60.0)):
        needed = workers_for_wait(arrival, run_s, target)
        load = arrival * run_s
        assert wait_exceeds_probability(needed, load, run_s, target) <= 0.05
        assert needed - 1 <= load or wait_exceeds_probability(needed - 1, load, run_s, target) > 0.05


def test_capacity_of_a_draining_queue():
    # over 300 s: backlog 100 -> 40, 600 jobs ended: arrivals 540, λ = 1.8/s, μ = 2/s, net 0.2/s
    figures = capacity(FlowWindow(300.0, 100, 40, 600, mean_active=4.0), 2000.0, 60.0)
    assert figures.arrival_per_s == pytest.approx(1.8) and figures.completion_per_s == pytest.approx(2.0)
    assert figures.offered_load == pytest.approx(3.6) and figures.busy_workers == 4.0
    assert figures.drain_s == pytest.approx(40 / 0.2) and not figures.growing
    assert drain_text(figures) == "drains in 4 min"
    assert figures.workers_needed == workers_for_wait(1.8, 2.0, 60.0) >= 4


def test_capacity_of_a_growing_queue_and_of_an_unmeasured_one():
    growing = capacity(FlowWindow(60.0, 10, 70, 30), 500.0, 60.0)
    assert growing.arrival_per_s == pytest.approx(1.5) and growing.growing and growing.drain_s is None
    assert drain_text(growing) == "growing"
    empty = capacity(FlowWindow(60.0, 0, 0, 0), None, 60.0)
    assert empty.drain_s == 0.0 and drain_text(empty) == "empty" and empty.workers_needed == 0
    unknown = capacity(None, 500.0, 60.0)
    assert unknown.arrival_per_s is None and unknown.workers_needed is None and drain_text(unknown) == "n/a"
    no_runs = capacity(FlowWindow(60.0, 5, 8, 0), None, 60.0)
    assert no_runs.workers_needed is None and no_runs.growing  # arrivals but no run time measured
    assert capacity(FlowWindow(60.0, 50, 0, 20), 100.0, 60.0).arrival_per_s == 0.0  # a purge is not arrivals


def test_duration_text():
    assert [duration_text(s) for s in (12.2, 200, 9000, 400000)] == ["13 s", "4 min", "2.5 h", "5 d"]


def test_timeout_advice_suggests_and_flags():
    assert [nice_ceiling(s) for s in (0.37, 1.0, 13, 130, 0.0021)] == [0.5, 1.0, 20.0, 200.0, 0.005]
    advice = timeout_advice(p99_ms=800.0, p999_ms=1200.0, max_ms=1500.0, configured_s=180.0)
    assert advice.suggested_s == 2.0 and advice.verdict == "far_above_run_times"  # 180 > 10 × 1.5 s
    assert timeout_advice(800.0, 1200.0, 1500.0, 0.5).verdict == "cuts_off_normal_jobs"
    assert timeout_advice(800.0, 1200.0, 1500.0, 5.0).verdict == "ok"
    bare = timeout_advice(800.0, 1200.0, 1500.0, None)
    assert bare.verdict is None and bare.suggested_s == 2.0
    nothing = timeout_advice(None, None, None, 30.0)
    assert nothing.suggested_s is None and nothing.verdict is None
