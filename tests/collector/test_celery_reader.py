"""The Celery reader against a real redis-server; the layout and event state without Redis."""
from __future__ import annotations

import json
import logging
import time

import pytest
import redis

from collector.celery_events import EventState
from collector.celery_layout import (
    PUBLISHED_AT_HEADER,
    Bindings,
    CeleryLayout,
    decode_events,
    is_timeout,
    parse_head,
    parse_unacked,
)
from collector.celery_listener import EventListener
from collector.celery_publish import install_publish_timestamp, uninstall_publish_timestamp
from collector.celery_reader import ALWAYS_UNAVAILABLE, OLDEST_FIELD, TIMING_FIELDS, CeleryReader
from collector.roundtrips import CountingRedis
from tests.collector.celery_app import make_app
from tests.collector.celery_helpers import envelope, wait_for

HARD_LIMIT_TRACEBACK = ('Traceback (most recent call last):\n  File "billiard/pool.py", line 745, in on_hard_timeout\n'
                        "    raise TimeLimitExceeded(job._timeout)\n"
                        "billiard.exceptions.TimeLimitExceeded: TimeLimitExceeded(1,)\n")
READ_COMMANDS = {"time", "smembers", "llen", "lindex", "hlen", "hrandfield", "scan", "mget", "multi", "exec",
                 "client|setinfo", "hello", "select", "ping"}
CUSTOM_OPTIONS = {"global_keyprefix": "qw:", "sep": ":", "priority_steps": [0, 5]}


def test_layout_names_and_parsers():
    default = CeleryLayout()
    assert default.bucket_keys("q") == ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
    assert (default.binding_match, default.unacked, default.event_channel_pattern) == (
        "_kombu.binding.*", "unacked", "/0.celeryev/*")
    custom = CeleryLayout(global_keyprefix="app[1]:", sep=":", priority_steps=(0, 5), db=3)
    assert custom.bucket_keys("q") == ["app[1]:q", "app[1]:q:5"]
    assert custom.binding_match == "app\\[1\\]:_kombu.binding.*"
    assert custom.event_channel_pattern == "app\\[1\\]:/3.celeryev/*"
    assert custom.exchange_of("app[1]:_kombu.binding.x.y") == "x.y" and custom.exchange_of("_kombu.binding.x") is None
    assert CeleryLayout(fanout_prefix=False).event_channel_pattern == "celeryev/*"

    bindings = Bindings.from_tables({
        "celery": [b"celery\x06\x16\x06\x16celery"], "media": ["video\x06\x16\x06\x16av", "image\x06\x16\x06\x16img"],
        "celeryev": ["worker.#\x06\x16\x06\x16celeryev.1234"], "celery.pidbox": ["\x06\x16\x06\x16w1@h.celery.pidbox"],
        "reply.celery.pidbox": ["x\x06\x16\x06\x16y"]})
    assert bindings.queues == {"celery", "av", "img"}
    assert bindings.queue_for("", "celery") == "celery" and bindings.queue_for("media", "image") == "img"
    assert bindings.queue_for(None, "video") == "av" and bindings.queue_for("media", "nope") is None

    heartbeat = {"type": "worker-heartbeat", "hostname": "w@h", "processed": 3}
    batch = [{"type": "task-started", "uuid": "a"}, {"type": "task-succeeded", "uuid": "a", "runtime": 0.5}]
    assert decode_events(envelope(heartbeat)) == [heartbeat] and decode_events(envelope(batch)) == batch
    assert decode_events("not json") == [] and decode_events(envelope("text")) == []

    assert is_timeout("ExceptionWithTraceback()", HARD_LIMIT_TRACEBACK)
    assert is_timeout("SoftTimeLimitExceeded()") and is_timeout("TimeLimitExceeded(1,)")
    assert not is_timeout("ValueError('TimeLimitExceeded mentioned')", "ValueError: TimeLimitExceeded mentioned")
    head = parse_head(envelope([[], {}, {}], headers={"id": "t1", PUBLISHED_AT_HEADER: 1700000000.5}))
    assert (head.task_id, head.published_at_s) == ("t1", 1700000000.5) and parse_head(None) is None
    message = json.loads(envelope([[], {}, {}], headers={"id": "t2", "task": "qw.noop",
                                                         "eta": "2030-01-01T00:00:00+00:00"}))
    entry = parse_unacked(json.dumps([message, "", "celery"]))
    assert (entry.task_id, entry.task_name, entry.exchange, entry.routing_key) == ("t2", "qw.noop", "", "celery")
    assert entry.eta_s == 1893456000.0 and parse_unacked("[1]") is None


def test_event_state_counts_each_end_once_and_tells_silent_workers():
    state = EventState(heartbeat_slack_s=1.0)
    T0 = 1_700_000_000.0  # event times are epoch seconds (implausible ones are dropped)
    assert not state.events_live(0.0)
    state.apply({"type": "worker-online", "hostname": "a@h", "pid": 1, "freq": 2.0, "processed": 0,
                 "timestamp": T0 + 100.0}, T0 + 100.0)
    state.apply({"type": "task-sent", "uuid": "t1", "name": "n", "queue": "q", "timestamp": T0 + 99.0}, T0 + 100.0)
    state.apply({"type": "task-started", "uuid": "t1", "hostname": "a@h", "timestamp": T0 + 100.5}, T0 + 100.5)
    assert [t.task_id for t in state.in_flight(T0 + 101.0)] == ["t1"]
    failed = {"type": "task-failed", "uuid": "t1", "hostname": "a@h", "timestamp": T0 + 101.5,
              "exception": "ExceptionWithTraceback()", "traceback": HARD_LIMIT_TRACEBACK}
    state.apply(failed, T0 + 101.5)
    state.apply(failed, T0 + 101.6)
    [outcome] = state.drain()
    assert (outcome.queue, outcome.failed, outcome.timed_out, outcome.sent_at_s) == ("q", True, True, T0 + 99.0)
    assert outcome.finished_job().processing_ms == pytest.approx(1000.0)
    assert outcome.finished_job().wait_ms == pytest.approx(1500.0)
    state.apply({"type": "task-succeeded", "uuid": "t2", "hostname": "a@h", "runtime": 0.25,
                 "timestamp": T0 + 102.0}, T0 + 102.0)
    [succeeded] = state.drain()
    assert succeeded.finished_job().processing_ms == pytest.approx(250.0) and state.route_of("n") == "q"
    assert state.events_live(T0 + 102.0) and state.in_flight(T0 + 102.0) == []

    state.apply({"type": "task-started", "uuid": "lost", "hostname": "a@h", "timestamp": T0 + 102.0}, T0 + 102.0)
    state.apply({"type": "worker-heartbeat", "hostname": "a@h", "pid": 1, "freq": 2.0, "active": 0,
                 "processed": 2, "timestamp": T0 + 106.0}, T0 + 106.0)
    assert state.in_flight(T0 + 106.0) == []  # the heartbeat says nothing runs: the missed end is settled

    state.apply({"type": "worker-online", "hostname": "b@h", "pid": 2, "freq": 2.0, "processed": 0,
                 "timestamp": T0 + 110.0}, T0 + 110.0)
    state.apply({"type": "worker-heartbeat", "hostname": "b@h", "pid": 2, "freq": 2.0, "processed": 4,
                 "timestamp": T0 + 112.0}, T0 + 112.0)
    assert not state.events_live(T0 + 112.5)  # b processes tasks and sends no task events
    workers = {w.nodename: (w, alive) for w, alive in state.workers(T0 + 112.5)}
    assert workers["b@h"][1] and not workers["a@h"][1]  # a: last heard T0 + 106.0, stale after 2 x 2 + 1 s
    assert state.events_live(T0 + 112.0 + 6.0)  # b went stale: the live workers all send task events (none left)
    listener = EventListener(redis.Redis(), "/0.celeryev/*", state)
    listener._apply({"type": "worker-heartbeat", "hostname": "c@h", "loadavg": 5}, T0 + 120.0)  # malformed: skipped


@pytest.mark.parametrize("options", [{}, CUSTOM_OPTIONS], ids=["default", "prefix-sep-steps"])
def test_waiting_counts_include_priority_buckets_and_equal_kombus(redis_url, redis_client, options):
    app = make_app(redis_url, transport_options=options, send_sent_events=False)
    noop = app.tasks["qw.noop"]
    for priority in (None, 0, 2, 4, 5, 7, 9, 9):
        noop.apply_async(queue="alpha", priority=priority)
    for _ in range(3):
        noop.apply_async(queue="beta", priority=6)
    prefix = options.get("global_keyprefix", "")
    redis_client.sadd(f"{prefix}_kombu.binding.celeryev", "worker.#\x06\x16\x06\x16celeryev.abc")
    redis_client.sadd(f"{prefix}_kombu.binding.celery.pidbox", "\x06\x16\x06\x16w@h.celery.pidbox")
    client = redis.Redis.from_url(redis_url, decode_responses=bool(options))
    reader = CeleryReader(client, queues=["gamma"], listen=False,
                          **{key: value for key, value in options.items()})

    reading = reader.read({})

    queues = {q.queue_name: q for q in reading.queues}
    assert sorted(queues) == ["alpha", "beta", "gamma"]
    layout = reader.layout
    with app.connection() as connection:
        channel = connection.default_channel
        for name, queue in queues.items():
            llen_sum = sum(redis_client.llen(key) for key in layout.bucket_keys(name))
            assert queue.waiting == llen_sum == channel._size(name)
    assert (queues["alpha"].waiting, queues["beta"].waiting, queues["gamma"].waiting) == (8, 3, 0)
    buckets = {key: redis_client.llen(key) for key in layout.bucket_keys("alpha")}
    assert len([n for n in buckets.values() if n]) == (4 if not options else 2)
    assert reading.round_trips == 3 and ALWAYS_UNAVAILABLE | TIMING_FIELDS <= reading.unavailable
    assert OLDEST_FIELD in queues["alpha"].unavailable and reading.workers == []
    client.close()


def test_oldest_waiting_from_the_publish_time_header(redis_url, redis_client):
    app = make_app(redis_url, send_sent_events=False)
    install_publish_timestamp()
    try:
        before_s = time.time()
        app.tasks["qw.noop"].apply_async(queue="stamped", priority=9)
        app.tasks["qw.noop"].apply_async(queue="stamped")
        after_s = time.time()
    finally:
        uninstall_publish_timestamp()
    reader = CeleryReader(redis_client, listen=False)
    reading = reader.read({})
    [stamped] = reading.queues
    assert before_s <= stamped.oldest_enqueued_at_s <= after_s and stamped.waiting == 2
    assert OLDEST_FIELD not in reading.unavailable | stamped.unavailable
    app.tasks["qw.noop"].apply_async(queue="stamped")
    assert reader.read({}).queues[0].oldest_enqueued_at_s == stamped.oldest_enqueued_at_s
    app.tasks["qw.noop"].apply_async(queue="unstamped")
    reader = CeleryReader(redis_client, listen=False)
    queues = {q.queue_name: q for q in reader.read({}).queues}
    assert OLDEST_FIELD in queues["unstamped"].unavailable  # only there: the stamped queue's age is known
    assert OLDEST_FIELD not in queues["stamped"].unavailable


def snapshot(client: redis.Redis) -> dict:
    """Every key's type, serialized value and whether it expires."""
    return {key: (client.type(key), client.dump(key), client.pttl(key) > 0) for key in client.scan_iter(count=1000)}


def test_a_read_changes_nothing(redis_url, redis_client):
    app = make_app(redis_url, send_sent_events=False)
    app.tasks["qw.noop"].apply_async(queue="ro", priority=6)
    app.tasks["qw.noop"].apply_async(queue="ro")
    message = json.loads(envelope([[], {}, {}], headers={"id": "u1", "task": "qw.noop"}))
    redis_client.hset("unacked", "tag-1", json.dumps([message, "", "ro"]))
    redis_client.zadd("unacked_index", {"tag-1": time.time()})
    redis_client.set("celery-task-meta-done-1", json.dumps({"status": "SUCCESS", "queue": "ro", "name": "qw.noop"}))
    redis_client.execute_command("ACL", "SETUSER", "qw_reader", "on", ">secret", "~*", "&*", "resetchannels", "&*",
                                 "-@all", "+@read", "+multi", "+exec", "+time", "+ping", "+hello", "+select",
                                 "+psubscribe", "+punsubscribe")
    reader_client = redis.Redis.from_url(redis_url, username="qw_reader", password="secret")
    reader = CeleryReader(reader_client, result_client=reader_client)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader_client.set("probe", "1")
        reader.start()
        assert reader.listener.wait_subscribed(5)
        before = snapshot(redis_client)
        for event in ({"type": "worker-heartbeat", "hostname": "w@h", "pid": 1, "freq": 2.0, "timestamp": 1.0},
                      [{"type": "task-started", "uuid": "done-1", "hostname": "w@h", "timestamp": 2.0},
                       {"type": "task-succeeded", "uuid": "done-1", "hostname": "w@h", "runtime": 0.1,
                        "timestamp": 2.1}]):
            redis_client.publish("/0.celeryev/task.multi", envelope(event))
        wait_for(lambda: reader.state.task_events_seen >= 2, 5, "published events")
        redis_client.config_resetstat()
        reading = reader.read({})
        stats = redis_client.info("commandstats")
        assert snapshot(redis_client) == before
    finally:
        reader.close()
        reader_client.close()
        redis_client.execute_command("ACL", "DELUSER", "qw_reader")
    used = {name.removeprefix("cmdstat_") for name in stats} - {"info", "config|resetstat"}
    assert used <= READ_COMMANDS, used - READ_COMMANDS
    [ro] = reading.queues
    assert (ro.waiting, ro.active, ro.new_finished) == (2, 0, 1)  # the finish is placed by its result metadata
    assert reading.round_trips == 4  # scan, bindings, snapshot, result metadata


def test_constant_round_trips_for_1_and_20_queues(redis_url, redis_client):
    def fill(queue_count: int) -> tuple[int, int]:
        redis_client.flushall()
        app = make_app(redis_url, send_sent_events=False)
        for i in range(queue_count):  # new names: kombu binds a queue once per process (class-level state)
            app.tasks["qw.noop"].apply_async(queue=f"n{queue_count}-q{i}", priority=i % 10)
        client = CountingRedis(connection_pool=redis_client.connection_pool)
        reader = CeleryReader(client, listen=False)
        first, second = reader.read({}), reader.read({})
        assert len(first.queues) == len(second.queues) == queue_count
        assert all(q.waiting == 1 for q in second.queues)
        assert client.round_trips == first.round_trips + second.round_trips
        return first.round_trips, second.round_trips

    assert fill(1) == fill(20) == (3, 2)


def test_event_state_keeps_what_it_knows_of_settled_tasks_and_ends_lost_ones_once():
    state = EventState(heartbeat_slack_s=1.0)
    T0 = 1_700_000_000.0  # event times are epoch seconds (implausible ones are dropped)
    state.apply({"type": "worker-online", "hostname": "a@h", "pid": 1, "freq": 2.0, "timestamp": T0 + 100.0}, T0 + 100.0)
    state.apply({"type": "task-sent", "uuid": "t1", "name": "render", "queue": "pdf-render",
                 "timestamp": T0 + 100.0}, T0 + 100.0)
    state.apply({"type": "task-started", "uuid": "t1", "hostname": "a@h", "pid": 1, "timestamp": T0 + 100.5}, T0 + 100.5)
    # a hard time limit: the worker drops the task from `active` before its batched task-failed goes out
    state.apply({"type": "worker-heartbeat", "hostname": "a@h", "pid": 1, "freq": 2.0, "active": 0,
                 "timestamp": T0 + 103.0}, T0 + 103.0)
    assert state.in_flight(T0 + 103.0) == []
    state.apply({"type": "task-failed", "uuid": "t1", "hostname": "a@h", "timestamp": T0 + 102.5,
                 "exception": "ExceptionWithTraceback()", "traceback": HARD_LIMIT_TRACEBACK}, T0 + 103.1)
    [timed_out] = state.drain()
    assert (timed_out.queue, timed_out.timed_out, timed_out.lost) == ("pdf-render", True, False)
    assert timed_out.finished_job().processing_ms == pytest.approx(2000.0)

    def start(task_id: str, nodename: str, pid: int, at_s: float) -> None:
        state.apply({"type": "task-sent", "uuid": task_id, "name": "charge", "queue": "billing",
                     "timestamp": at_s - 0.5}, at_s)
        state.apply({"type": "task-started", "uuid": task_id, "hostname": nodename, "pid": pid, "timestamp": at_s},
                    at_s)

    start("stale", "a@h", 1, T0 + 104.0)
    state.apply({"type": "worker-heartbeat", "hostname": "a@h", "pid": 1, "freq": 2.0, "active": 1,
                 "timestamp": T0 + 104.5}, T0 + 104.5)
    state.settle_lost(T0 + 109.0)  # 2 x 2 + 1 s after the last heartbeat: not stale yet
    assert state.drain() == []
    state.settle_lost(T0 + 109.6)
    [lost] = state.drain()
    assert (lost.task_id, lost.queue, lost.failed, lost.timed_out, lost.lost) == ("stale", "billing", True, False,
                                                                                   True)
    assert lost.finished_job().processing_ms is None and lost.finished_job().wait_ms == pytest.approx(500.0)
    state.apply({"type": "task-succeeded", "uuid": "stale", "hostname": "a@h", "runtime": 9.0,
                 "timestamp": T0 + 113.0}, T0 + 113.0)
    state.settle_lost(T0 + 200.0)
    assert state.drain() == []  # counted once, as lost

    state.apply({"type": "worker-online", "hostname": "b@h", "pid": 7, "freq": 2.0, "timestamp": T0 + 120.0}, T0 + 120.0)
    start("cold", "b@h", 7, T0 + 121.0)
    state.apply({"type": "worker-offline", "hostname": "b@h", "pid": 7, "freq": 2.0, "timestamp": T0 + 122.0}, T0 + 122.0)
    assert [(o.task_id, o.lost) for o in state.drain()] == [("cold", True)]

    state.apply({"type": "worker-online", "hostname": "c@h", "pid": 8, "freq": 2.0, "timestamp": T0 + 130.0}, T0 + 130.0)
    start("old", "c@h", 8, T0 + 131.0)
    state.apply({"type": "worker-heartbeat", "hostname": "c@h", "pid": 9, "freq": 2.0, "active": 0,
                 "timestamp": T0 + 132.0}, T0 + 132.0)  # restarted at once under the same name
    start("new", "c@h", 9, T0 + 132.5)
    assert [(o.task_id, o.lost) for o in state.drain()] == [("old", True)]
    assert [t.task_id for t in state.in_flight(T0 + 133.0)] == ["new"]


def _publish(client: redis.Redis, *events: dict) -> None:
    client.publish("/0.celeryev/task.multi", envelope(list(events)))


def test_an_end_of_unknown_queue_goes_to_no_queue_unless_only_one_exists(redis_url, redis_client, caplog):
    app = make_app(redis_url, send_sent_events=False)
    app.tasks["qw.noop"].apply_async(queue="solo")  # binds the one queue of this broker
    reader = CeleryReader(redis.Redis.from_url(redis_url), discover_every=1)
    try:
        reader.start()
        assert reader.listener.wait_subscribed(5)
        now_s = time.time()
        heartbeat = {"type": "worker-heartbeat", "hostname": "w@h", "pid": 1, "freq": 2.0, "timestamp": now_s}
        started = {"type": "task-started", "uuid": "a", "hostname": "w@h", "timestamp": now_s}
        _publish(redis_client, heartbeat, started, {"type": "task-failed", "uuid": "a", "hostname": "w@h", "timestamp": now_s + 1,
                  "exception": "ExceptionWithTraceback()", "traceback": HARD_LIMIT_TRACEBACK})
        wait_for(lambda: reader.state.task_events_seen >= 2, 5, "the events")
        [solo] = reader.read({}).queues
        assert (solo.queue_name, solo.new_failed, solo.new_timeouts) == ("solo", 1, 1)

        app.tasks["qw.noop"].apply_async(queue="other")  # now there are two: an unknown queue stays unknown
        caplog.set_level(logging.WARNING, logger="collector.celery_reader")
        for task_id in ("b", "c"):
            _publish(redis_client, {"type": "task-started", "uuid": task_id, "hostname": "w@h", "timestamp": now_s},
                     {"type": "task-succeeded", "uuid": task_id, "hostname": "w@h", "runtime": 0.1,
                      "timestamp": now_s + 1})
        wait_for(lambda: reader.state.task_events_seen >= 6, 5, "the events")
        reading = reader.read({})
        assert [q.queue_name for q in reading.queues] == ["other", "solo"]
        assert all(q.new_finished == q.new_failed == q.active == 0 for q in reading.queues)
        assert reader.unattributed == 2
        assert len([r for r in caplog.records if "cannot be told" in r.getMessage()]) == 1
    finally:
        reader.close()
