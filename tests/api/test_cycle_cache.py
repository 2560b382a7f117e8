"""The per-cycle answer cache over a real SQLite file: one computation per cycle, shared across threads."""
from __future__ import annotations

import threading
import time

from api.cycle_cache import CycleCache
from storage.queries_alerts import list_alerts
from storage.queries_latest import dashboard_summary
from storage.writer import acknowledge_alert, record_outage
from tests.storage.test_writer import _cycle


def test_one_computation_per_cycle_and_a_new_one_after_the_next_cycle(engine):
    _cycle(engine, time.time() - 10, emails=5)
    cache = CycleCache(engine)
    first = cache.get("summary", cache.stamp(), lambda: dashboard_summary(engine))
    again = cache.get("summary", cache.stamp(), lambda: dashboard_summary(engine))
    assert again is first and cache.computed == 1 and first["totalWaiting"] == 5
    _cycle(engine, time.time(), emails=7)
    after = cache.get("summary", cache.stamp(), lambda: dashboard_summary(engine))
    assert cache.computed == 2 and after["totalWaiting"] == 7


def test_an_outage_and_an_acknowledgement_change_the_stamp(engine):
    now_s = time.time()
    _cycle(engine, now_s - 20, emails=250)  # opens a depth alert
    cache = CycleCache(engine)
    before = cache.stamp()
    assert not before.redis_down
    alert_id = list_alerts(engine, open_only=True)[0]["id"]
    acknowledge_alert(engine, alert_id, "ops@example.com", now_s - 15)
    acknowledged = cache.stamp()
    assert acknowledged.alert_event_id > before.alert_event_id and acknowledged.cycle_id == before.cycle_id
    record_outage(engine, now_s - 10, now_s - 9, "Redis unreachable (rq): connection refused")
    down = cache.stamp()
    assert down.redis_down and down.cycle_id > before.cycle_id and down.last_ok_at_s == before.last_ok_at_s


def test_answers_expire_by_age_within_a_cycle(engine):
    _cycle(engine, time.time(), emails=1)
    now = [0.0]
    cache = CycleCache(engine, max_age_s=5.0, clock=lambda: now[0])
    stamp = cache.stamp()
    cache.get("k", stamp, lambda: 1)
    now[0] = 4.9
    assert cache.get("k", stamp, lambda: 2) == 1
    now[0] = 5.1
    assert cache.get("k", stamp, lambda: 3) == 3


def test_concurrent_requests_share_one_computation_and_other_keys_do_not_wait(engine):
    _cycle(engine, time.time(), emails=1)
    cache = CycleCache(engine)
    stamp = cache.stamp()
    release = threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        release.wait(10)
        return "slow"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("slow", stamp, slow))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert cache.get("other", stamp, lambda: "fast") == "fast"  # not held up by the slow answer
    assert time.monotonic() - started < 1.0
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["slow"] * 8 and len(calls) == 1


def test_an_error_is_not_cached(engine):
    _cycle(engine, time.time(), emails=1)
    cache = CycleCache(engine)
    stamp = cache.stamp()

    def broken() -> int:
        raise RuntimeError("database gone")

    for _ in range(2):
        try:
            cache.get("k", stamp, broken)
        except RuntimeError:
            pass
    assert cache.get("k", stamp, lambda: 4) == 4 and cache.computed == 1


def test_a_stale_ok_answer_is_served_from_the_previous_cycle_while_the_new_one_is_computed(engine):
    _cycle(engine, time.time() - 10, emails=1)
    cache = CycleCache(engine)
    old_stamp = cache.stamp()
    assert cache.get("stats", old_stamp, lambda: "old", stale_ok=True) == "old"
    _cycle(engine, time.time(), emails=2)
    new_stamp = cache.stamp()
    release, computing = threading.Event(), threading.Event()

    def slow() -> str:
        computing.set()
        release.wait(10)
        return "new"

    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(cache.get("stats", new_stamp, slow, stale_ok=True)))
    worker.start()
    assert computing.wait(10)
    started = time.monotonic()
    assert cache.get("stats", new_stamp, lambda: "unused", stale_ok=True) == "old"  # served at once
    assert time.monotonic() - started < 1.0
    release.set()
    worker.join(10)
    assert results == ["new"] and cache.get("stats", new_stamp, lambda: "unused", stale_ok=True) == "new"
