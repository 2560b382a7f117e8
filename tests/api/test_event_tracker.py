"""The push-event tracker against a real SQLite file: recycled workers and health changes."""
from __future__ import annotations

from api.events import EventTracker
from core.health import Thresholds
from storage.writer import CycleRecord, write_cycle
from tests.storage.test_writer import _cycle


def _worker(at_s: float, birth_s: float, jobs: int) -> dict:
    return {"sampled_at_s": at_s, "worker_name": "w1", "library": "rq", "queues": "emails", "pid": 1,
            "hostname": "h", "state": "idle", "alive": True, "jobs_processed": jobs, "successful_jobs": jobs,
            "failed_jobs": 0, "birth_at_s": birth_s, "last_heartbeat_at_s": at_s, "should_recycle": False}


def test_a_worker_flagged_for_recycling_that_restarts_is_reported(engine):
    write_cycle(engine, CycleRecord(100.0, 100.0, 0, [], [_worker(100.0, 50.0, 1500)]), lambda rows: [])
    tracker = EventTracker(engine, Thresholds())
    assert tracker.poll() == []
    write_cycle(engine, CycleRecord(110.0, 110.0, 0, [], [_worker(110.0, 105.0, 0)]), lambda rows: [])
    assert tracker.poll() == [("worker:recycled", {"workerId": "w1", "queueName": "emails"})]
    assert tracker.poll() == []


def test_health_changes_are_reported_once(engine):
    _cycle(engine, 100.0, emails=5)
    tracker = EventTracker(engine, Thresholds())
    _cycle(engine, 110.0, emails=250)
    names = [name for name, _ in tracker.poll()]
    assert names == ["alert:created", "queue:health-changed"]
    _cycle(engine, 120.0, emails=260)
    assert tracker.poll() == []
