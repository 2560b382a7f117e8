"""Alert timing end to end: a real collector over real RQ workers, short pending_s and keep_firing_s."""
from __future__ import annotations

import threading
import time

import redis
from rq import Queue
from sqlalchemy import select

from collector.alerting import redis_source
from collector.bullmq_reader import BullMQReader
from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage.engine import make_engine
from storage.queries_alerts import list_alerts, pending_breaches
from storage.schema import alert_events, alert_rule_states, alerts, queue_snapshots
from storage.silences import add_silence, expire_silence
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import run_burst_worker
from tests.conftest import free_port, start_redis_server

DEEP = 215  # above the default queue-depth warning level of 200


def _collector(redis_url: str, db_url: str, tmp_path, readers=None, **alerting) -> Collector:
    lines = ["[alerts]"] + [f"{name} = {value}" for name, value in alerting.items()]
    config = tmp_path / "thresholds.toml"
    config.write_text("\n".join(lines) + "\n")
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, config_path=str(config), interval_s=0.3)
    client = redis.Redis.from_url(redis_url)
    return Collector(settings, make_engine(db_url), readers or RQReader(client, settle_s=0))


def _alerts(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(alerts).order_by(alerts.c.opened_at_s)).mappings()]


def _events(engine) -> list[str]:
    with engine.connect() as conn:
        return [r.event for r in conn.execute(select(alert_events.c.event).order_by(alert_events.c.id))]


def _fill(client, name: str = "bulk", jobs: int = DEEP) -> Queue:
    queue = Queue(name, connection=client)
    with client.pipeline() as pipe:
        for _ in range(jobs):
            queue.enqueue(rq_jobs.noop, pipeline=pipe)
        pipe.execute()
    return queue


def _cycle_until(collector: Collector, done, timeout_s: float = 20.0, pause_s: float = 0.2) -> float:
    """Run cycles until `done()`; returns when it became true (epoch seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert collector.run_cycle().ok
        if done():
            return time.time()
        time.sleep(pause_s)
    raise AssertionError("condition not reached")


def test_a_breach_shorter_than_pending_s_never_becomes_an_alert(redis_url, redis_client, db_url, tmp_path):
    collector = _collector(redis_url, db_url, tmp_path, pending_s=3.0)
    _fill(redis_client)
    assert collector.run_cycle().ok
    pending = pending_breaches(collector.engine)
    assert pending[["queue_name", "alert_type", "severity"]].values.tolist() == [["bulk", "queue_depth", "warning"]]
    assert list_alerts(collector.engine) == [] and _alerts(collector.engine) == []
    run_burst_worker(redis_url, "bulk")
    assert collector.run_cycle().ok
    time.sleep(3.0)
    assert collector.run_cycle().ok
    assert _alerts(collector.engine) == [] and _events(collector.engine) == []
    assert pending_breaches(collector.engine).empty


def test_a_sustained_breach_fires_within_pending_s_and_one_interval(redis_url, redis_client, db_url, tmp_path):
    collector = _collector(redis_url, db_url, tmp_path, pending_s=1.5)
    _fill(redis_client)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not _alerts(collector.engine) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    with collector.engine.connect() as conn:
        first_cycle_s = conn.execute(select(alert_events.c.at_s)).scalar()
    (alert,) = _alerts(collector.engine)
    with collector.engine.connect() as conn:
        first_s = conn.execute(select(queue_snapshots.c.sampled_at_s).order_by(queue_snapshots.c.sampled_at_s)).first()[0]
    waited_s = alert["opened_at_s"] - first_s
    print(f"\nbreach first seen to alert opened: {waited_s:.2f} s (pending_s 1.5, interval 0.3)")
    assert 1.5 <= waited_s <= 1.5 + 0.3 + 0.5  # cycle duration is the slack
    assert first_cycle_s == alert["opened_at_s"]
    assert [a["id"] for a in list_alerts(collector.engine)] == [alert["id"]]
    assert pending_breaches(collector.engine).empty


def test_a_restart_keeps_the_pending_timer(redis_url, redis_client, db_url, tmp_path):
    first = _collector(redis_url, db_url, tmp_path, pending_s=2.0)
    _fill(redis_client)
    assert first.run_cycle().ok
    since_s = pending_breaches(first.engine)["pending_since_s"].iloc[0]
    time.sleep(2.0)
    second = _collector(redis_url, db_url, tmp_path, pending_s=2.0)  # a restarted collector
    assert second.run_cycle().ok
    (alert,) = _alerts(second.engine)
    assert alert["opened_at_s"] - since_s >= 2.0


def test_keep_firing_resolves_late_and_a_flap_keeps_one_id(redis_url, redis_client, db_url, tmp_path):
    collector = _collector(redis_url, db_url, tmp_path, pending_s=0, keep_firing_s=2.0)
    _fill(redis_client)
    assert collector.run_cycle().ok
    (opened,) = _alerts(collector.engine)
    run_burst_worker(redis_url, "bulk")
    assert collector.run_cycle().ok  # clear: keeps firing
    with collector.engine.connect() as conn:
        clear_since_s = conn.execute(select(alert_rule_states.c.clear_since_s)).scalar_one()
    assert _alerts(collector.engine)[0]["resolved_at_s"] is None
    _fill(redis_client)  # back within keep_firing_s: the same alert goes on
    assert collector.run_cycle().ok
    run_burst_worker(redis_url, "bulk")
    resolved_s = _cycle_until(collector, lambda: _alerts(collector.engine)[0]["resolved_at_s"] is not None)
    (alert,) = _alerts(collector.engine)
    assert alert["id"] == opened["id"]
    assert _events(collector.engine) == ["opened", "resolved"]
    with collector.engine.connect() as conn:
        assert conn.execute(select(alert_rule_states)).first() is None
    assert alert["resolved_at_s"] - clear_since_s >= 2.0  # the second clear started later than the first
    assert resolved_s >= alert["resolved_at_s"]


def test_one_failure_among_fewer_than_min_jobs_opens_nothing(redis_url, redis_client, db_url, tmp_path):
    collector = _collector(redis_url, db_url, tmp_path, min_jobs=20)
    assert collector.run_cycle().ok
    queue = Queue("flaky", connection=redis_client)
    queue.enqueue(rq_jobs.fail)
    for _ in range(4):
        queue.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "flaky")
    assert collector.run_cycle().ok
    assert _alerts(collector.engine) == []  # 20 % of 5 jobs: above 15 % critical, but too few jobs
    time.sleep(1.1)  # RQ scores its registries in whole seconds: the next jobs end in a later second
    for _ in range(4):
        queue.enqueue(rq_jobs.fail)
    for _ in range(26):
        queue.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "flaky")
    # 5 failures of 35 jobs: judged now (the first reading's 300 s interval counts in proportion to its part
    # still in the window, so 30 to 35 jobs, an error rate of 13.3 to 14.3 %)
    assert collector.run_cycle().ok
    with collector.engine.connect() as conn:
        shown = [tuple(r) for r in conn.execute(select(
            queue_snapshots.c.interval_s, queue_snapshots.c.finished_delta, queue_snapshots.c.failed_delta,
            queue_snapshots.c.error_rate_pct, queue_snapshots.c.status).order_by(queue_snapshots.c.sampled_at_s))]
    assert [(a["alert_type"], a["severity"]) for a in _alerts(collector.engine)] == [("error_rate", "warning")], shown


def test_a_silenced_queues_breach_is_stored_as_silenced(redis_url, redis_client, db_url, tmp_path):
    collector = _collector(redis_url, db_url, tmp_path)
    silence = add_silence(collector.engine, duration_s=3600, comment="import window", now_s=time.time(),
                          queue_glob="bulk-*", created_by="ops@example.com")
    _fill(redis_client, "bulk-imports")
    _fill(redis_client, "emails")
    assert collector.run_cycle().ok
    silenced = {a["queue_name"]: a["silenced_by"] for a in _alerts(collector.engine)}
    assert silenced == {"bulk-imports": silence["id"], "emails": None}
    assert _events(collector.engine) == ["opened", "opened"]  # stored and fed; the notifier skips silenced ones
    expire_silence(collector.engine, silence["id"], time.time())
    assert {a["silenced_by"] for a in _alerts(collector.engine)} == {None}
    short = add_silence(collector.engine, duration_s=0.5, comment="brief", now_s=time.time(), library="rq")
    assert {a["silenced_by"] for a in _alerts(collector.engine)} == {short["id"]}
    time.sleep(0.6)
    assert collector.run_cycle().ok  # the silence expired by itself
    assert {a["silenced_by"] for a in _alerts(collector.engine)} == {None}


def test_a_redis_outage_is_one_system_alert_and_leaves_queue_alerts_alone(tmp_path, db_url):
    port = free_port()
    proc, url = start_redis_server(tmp_path, port)
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    readers = [RQReader(client, settle_s=0), BullMQReader(client)]  # two libraries on one Redis
    collector = _collector(url, db_url, tmp_path, readers=readers, pending_s=0, keep_firing_s=1.0)
    _fill(client)
    assert collector.run_cycle().ok
    (queue_alert,) = _alerts(collector.engine)
    proc.terminate()
    proc.wait(timeout=10)
    for _ in range(3):
        assert not collector.run_cycle().ok
    by_type = {a["alert_type"]: a for a in _alerts(collector.engine)}
    assert set(by_type) == {"queue_depth", "redis_unreachable"}
    redis_alert = by_type["redis_unreachable"]
    assert redis_alert["queue_name"] == f"redis://127.0.0.1:{port}/0" and redis_alert["value"] == 3
    assert by_type["queue_depth"]["resolved_at_s"] is None and by_type["queue_depth"]["id"] == queue_alert["id"]
    assert [a["type"] for a in list_alerts(collector.engine)] == ["queue_depth"]  # the spec's list: queue alerts
    proc, url = start_redis_server(tmp_path, port)
    try:
        run_burst_worker(url, "bulk")  # the queue is clear once Redis is back
        assert collector.run_cycle().ok
        rows = {a["alert_type"]: a for a in _alerts(collector.engine)}
        assert rows["queue_depth"]["resolved_at_s"] is None  # held while the Redis alert still fires
        _cycle_until(collector, lambda: all(a["resolved_at_s"] for a in _alerts(collector.engine)))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rows = {a["alert_type"]: a for a in _alerts(collector.engine)}
    assert rows["queue_depth"]["resolved_at_s"] >= rows["redis_unreachable"]["resolved_at_s"]
    assert len(_alerts(collector.engine)) == 2


def test_the_redis_source_never_shows_a_password():
    client = redis.Redis.from_url("redis://user:s3cret@127.0.0.1:6390/2")
    assert redis_source(client) == "redis://127.0.0.1:6390/2"
