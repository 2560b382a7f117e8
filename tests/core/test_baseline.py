""""Is this normal?": median and MAD of the same hour, pure computation on constructed values."""
from __future__ import annotations

import math

from core.baseline import (
    DAY_MS, HOUR_MS, WEEK_MS, baseline, daily_buckets_ms, judge, unusual_figures, weekly_buckets_ms, worst_first,
)

NOW_MS = 1_796_000_000_000 + 1234  # some moment inside an hour
HOUR = NOW_MS - NOW_MS % HOUR_MS


def test_buckets_are_the_same_hour_on_past_days_and_weeks():
    assert daily_buckets_ms(NOW_MS, 3) == [HOUR - DAY_MS, HOUR - 2 * DAY_MS, HOUR - 3 * DAY_MS]
    assert weekly_buckets_ms(NOW_MS, 2) == [HOUR - WEEK_MS, HOUR - 2 * WEEK_MS]


def test_weeks_are_used_once_two_exist_else_days():
    days = {HOUR - d * DAY_MS: v for d, v in zip(range(1, 6), [10.0, 12.0, 11.0, 50.0, 13.0])}
    usual = baseline(days, NOW_MS)
    assert usual.basis == "days" and usual.points == 5 and usual.median == 12.0 and usual.mad == 1.0
    three_weeks = {**days, **{HOUR - w * WEEK_MS: 90.0 + w for w in (1, 2, 3)}}
    assert baseline(three_weeks, NOW_MS).basis == "days"  # fewer than 4 weeks: the past days decide
    weeks = {**days, **{HOUR - w * WEEK_MS: v for w, v in zip(range(1, 9), [90.0, 100.0, 95.0, 97.0, 400.0])}}
    usual = baseline(weeks, NOW_MS)
    assert usual.basis == "weeks" and usual.points == 5 and usual.median == 97.0 and usual.mad == 3.0
    assert baseline({HOUR - DAY_MS: 1.0, HOUR - 2 * DAY_MS: 2.0}, NOW_MS) is None  # too little history


def test_a_spike_is_flagged_and_normal_variation_is_not():
    history = {HOUR - d * DAY_MS: v for d, v in zip(range(1, 15), [100, 104, 97, 110, 95, 102, 99, 101, 108, 93,
                                                                   100, 106, 98, 103])}
    usual = baseline(history, NOW_MS)
    assert usual.median == 100.5 and usual.mad == 3.0
    assert judge(112.0, usual, "waiting") is None  # 11.5 from the median: within 3.5 × 1.4826 × 3 = 15.6
    spike = judge(900.0, usual, "waiting")
    assert spike is not None and spike.direction == "above"
    assert math.isclose(spike.score, (900 - 100.5) / (1.4826 * 3.0))
    assert judge(50.0, usual, "waiting").direction == "below"


def test_minimum_difference_keeps_flat_history_from_flagging_noise():
    flat = baseline({HOUR - d * DAY_MS: 0.0 for d in range(1, 8)}, NOW_MS)
    assert flat.mad == 0.0
    assert judge(1.0, flat, "error_rate_pct") is None  # 1 point: below the 2-point minimum
    flagged = judge(8.0, flat, "error_rate_pct")
    assert flagged is not None and flagged.score == math.inf


def test_queues_are_ordered_worst_first():
    history = {"waiting": {HOUR - d * DAY_MS: 100.0 + d % 3 for d in range(1, 15)},
               "p95_processing_ms": {HOUR - d * DAY_MS: 1000.0 + 10 * (d % 4) for d in range(1, 15)}}
    mild = unusual_figures({"waiting": 140.0}, history, NOW_MS)
    bad = unusual_figures({"waiting": 5000.0, "p95_processing_ms": 9000.0}, history, NOW_MS)
    normal = unusual_figures({"waiting": 101.0, "p95_processing_ms": 1010.0}, history, NOW_MS)
    assert [u.figure for u in bad] == ["p95_processing_ms", "waiting"] or bad[0].score >= bad[1].score
    assert normal == []
    ordered = worst_first([("rq", "mild", mild), ("rq", "normal", normal), ("rq", "bad", bad)])
    assert [name for _, name, _ in ordered] == ["bad", "mild"]
