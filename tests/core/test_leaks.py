"""Leak hints on synthetic RSS series (pure), and the trend read over real SQLite rows."""
from __future__ import annotations

import numpy as np
import pytest

from core.health import Thresholds, ThresholdSet
from core.leaks import LeakRule, RssPoint, leak_hint, nice_floor, since_restart, theil_sen_slope
from storage.memory_trend import leak_hints, rss_trends
from storage.writer import CycleRecord, write_cycle

T0_S = 1_760_000_000.0
HOUR_S = 3600.0


def series(start_mb: float, end_mb: float, *, minutes: int = 120, jobs_end: int = 0, noise_mb: float = 3.0,
           seed: int = 1, t0_s: float = T0_S) -> list[RssPoint]:
    """A linear RSS ramp sampled every minute with Gaussian noise; jobs grow linearly to `jobs_end`."""
    rng = np.random.default_rng(seed)
    steps = np.linspace(0.0, 1.0, minutes + 1)
    return [RssPoint(t0_s + i * 60.0, float(start_mb + (end_mb - start_mb) * f + rng.normal(0, noise_mb)),
                     round(jobs_end * f))
            for i, f in enumerate(steps)]


def test_theil_sen_ignores_spikes():
    xs = [float(i) for i in range(40)]
    ys = [2.0 * x + 10.0 for x in xs]
    for i in (5, 17, 30):
        ys[i] += 900.0  # a few jobs that briefly used a lot of memory
    assert theil_sen_slope(xs, ys) == pytest.approx(2.0)
    assert abs(np.polyfit(xs, ys, 1)[0] - 2.0) > 0.5  # least squares is pulled by the spikes


def test_growth_while_jobs_flat_is_a_leak_with_an_idle_fix():
    points = [RssPoint(p.at_s, p.rss_mb, 50) for p in series(200.0, 540.0)]
    hint = leak_hint("w1", "rq", points, queues=["default"])
    assert hint is not None and hint["kind"] == "jobs_flat"
    assert hint["growth_mb"] == pytest.approx(340.0, abs=10.0)
    assert hint["message"].startswith("RSS grew 3")
    assert hint["message"].endswith("in 2 h while jobs stayed flat")
    assert hint["setting"].startswith("rq worker --max-idle-time ")
    assert hint["jobs_delta"] == 0 and hint["mb_per_job"] is None and hint["queues"] == ["default"]


def test_growth_per_job_suggests_a_job_limit_per_library():
    points = series(200.0, 400.0, jobs_end=1000)
    rq_hint = leak_hint("w1", "rq", points, soft_limit_mb=512.0)
    assert rq_hint is not None and rq_hint["kind"] == "per_job"
    assert rq_hint["mb_per_job"] == pytest.approx(0.2, rel=0.1)
    assert "over 1,000 jobs (~0.2" in rq_hint["message"]
    assert rq_hint["setting"] == "rq worker --max-jobs 1000"  # (512 - 200) MB / 0.2 MB per job, rounded down
    child = leak_hint("celery@h/4242", "celery", points, soft_limit_mb=512.0)
    assert child["setting"] == "celery worker --max-tasks-per-child 1000 --max-memory-per-child 524288"
    assert "KiB" in child["advice"]
    main = leak_hint("celery@h", "celery", points, soft_limit_mb=512.0)
    assert "prefork" in main["setting"] and "main process" in main["advice"]
    bull = leak_hint("q:1a2b3c4d", "bullmq", points, soft_limit_mb=512.0)
    assert "worker.close()" in bull["setting"] and "after 1000 jobs" in bull["setting"]
    assert "maxStalledCount only decides" in bull["advice"]


@pytest.mark.parametrize("name,points", [
    ("flat", series(300.0, 300.0, noise_mb=10.0)),
    ("too little growth", series(300.0, 370.0)),
    ("too small a share", series(2000.0, 2150.0)),
    ("too short", series(200.0, 600.0, minutes=30)),
    ("sawtooth", [RssPoint(T0_S + i * 60.0, 200.0 + (i % 20) * 8.0, i) for i in range(121)]),
])
def test_not_leaks(name, points):
    assert leak_hint("w1", "rq", points) is None, name


def test_warm_up_and_restarts_are_left_out():
    warm = [RssPoint(T0_S + i * 60.0, 200.0 + min(i, 9) * 40.0, 0) for i in range(121)]
    assert leak_hint("w1", "rq", warm, birth_at_s=T0_S) is None
    assert leak_hint("w1", "rq", warm, rule=LeakRule(warmup_s=0.0, min_rising_share=0.0)) is None
    before = series(200.0, 600.0, minutes=60, jobs_end=500)
    after = [RssPoint(p.at_s, p.rss_mb, p.jobs_processed) for p in series(200.0, 205.0, t0_s=T0_S + 3660.0,
                                                                             minutes=70, jobs_end=300)]
    assert since_restart(before + after, None, 600.0)[0].jobs_processed == 0
    assert leak_hint("w1", "rq", before + after) is None
    assert leak_hint("w1", "rq", series(200.0, 600.0, minutes=180, jobs_end=500)) is not None


def test_nice_floor():
    assert [nice_floor(v) for v in (0.3, 1, 3, 7, 19, 1560, 49_999)] == [1, 1, 2, 5, 10, 1000, 20_000]


def _worker_row(name: str, at_s: float, rss_mb: float | None, jobs: int, birth_at_s: float) -> dict:
    return {"sampled_at_s": at_s, "worker_name": name, "library": "rq", "queues": "default,low", "pid": 1,
            "hostname": "h", "state": "idle", "alive": True, "jobs_processed": jobs, "successful_jobs": jobs,
            "failed_jobs": 0, "birth_at_s": birth_at_s, "last_heartbeat_at_s": at_s,
            "memory_source": "agent" if rss_mb is not None else None, "rss_mb": rss_mb,
            "heap_used_mb": rss_mb, "heap_total_mb": rss_mb, "external_mb": 0.0, "array_buffers_mb": 0.0,
            "memory_percentage": None, "should_recycle": False, "recycle_reason": None}


def test_trend_read_keeps_the_floor_since_the_last_restart(engine):
    now_s = T0_S + 3 * HOUR_S
    for minute in range(180):
        at_s = T0_S + minute * 60.0
        leaking = 200.0 + minute * 3.0 + (400.0 if minute % 10 == 0 else 0.0)  # job peaks on top of the floor
        restarted_birth = T0_S if minute < 150 else T0_S + 150 * 60.0
        rows = [_worker_row("leaky", at_s, leaking, 7, T0_S - 600.0),
                _worker_row("steady", at_s, 250.0, minute, T0_S - 600.0),
                _worker_row("restarted", at_s, 200.0 + (minute % 150) * 3.0, minute % 150, restarted_birth),
                _worker_row("unmeasured", at_s, None, minute, T0_S)]
        write_cycle(engine, CycleRecord(at_s, at_s, 0, worker_rows=rows), lambda _open: [])

    trends = rss_trends(engine, now_s - 2 * HOUR_S, now_s)
    assert set(trends) == {("rq", "leaky"), ("rq", "steady"), ("rq", "restarted")}
    leaky = trends[("rq", "leaky")]["points"]
    assert sorted(p.rss_mb for p in leaky)[-2] < 200.0 + 180 * 3.0  # floors, not peaks (bar an edge bucket)
    assert trends[("rq", "restarted")]["birth_at_s"] == T0_S + 150 * 60.0
    assert min(p.at_s for p in trends[("rq", "restarted")]["points"]) >= T0_S + 150 * 60.0 - 600.0

    thresholds = Thresholds(default=ThresholdSet(memory_soft_limit_mb=2048.0))
    hints = leak_hints(engine, thresholds, now_s)
    assert [h["worker_name"] for h in hints] == ["leaky"]
    assert hints[0]["kind"] == "jobs_flat" and hints[0]["queues"] == ["default", "low"]
    assert hints[0]["growth_mb"] == pytest.approx(360.0, rel=0.1)  # 3 MB per minute over the 2 h window
    assert leak_hints(engine, thresholds, now_s + 3 * HOUR_S) == []  # nobody measured lately
