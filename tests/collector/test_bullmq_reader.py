"""The BullMQ reader against a real redis-server and real Python bullmq workers; the layout without Redis."""
from __future__ import annotations

import asyncio
import base64
import json

import pytest
import redis
from bullmq import FlowProducer

from collector.bullmq_layout import (
    STALLED_REASON,
    BullMQLayout,
    CounterSnapshot,
    ThroughputState,
    TimeoutRule,
    WorkerClient,
    advance_throughput,
    client_host,
    counter_delta,
    exception_name,
    glob_escape,
    priority_of_score,
    priority_tier,
    tally_events,
    tier_score_ranges,
    worker_client,
)
from collector.bullmq_reader import BullMQReader
from core.model import Cursor
from tests.collector.bullmq_helpers import (
    METRICS,
    add_jobs,
    by_name,
    cursors_of,
    kill,
    on_queue,
    run_worker,
    start_worker,
    wait_until,
)

PYTHON_TRACEBACK = ('Traceback (most recent call last):\n  File "w.py", line 3, in process\n'
                    "    await asyncio.wait_for(x, 1)\nTimeoutError\n")


def test_priority_tiers_and_score_ranges():
    assert [priority_tier(p) for p in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 2 ** 21)] == [1, 3, 3, 5, 5, 7, 7, 10, 10,
                                                                                    10, 10]
    assert priority_tier(0) == 5 and priority_tier(0, unprioritized=1) == 1
    ranges = tier_score_ranges()
    assert [tier for tier, _, _ in ranges] == [1, 3, 5, 7, 10]
    for priority in (1, 2, 3, 4, 9, 10, 11, 5000):
        score = priority * 2 ** 32 + 12345
        [tier] = [tier for tier, low, high in ranges if low <= score <= high]
        assert tier == priority_tier(priority) and priority_of_score(score) == priority
    assert ranges[0][1] == 2 ** 32 and ranges[-1][2] == float("inf")


def test_timeout_rule():
    rule = TimeoutRule()
    assert rule.matches(STALLED_REASON) and rule.matches("upstream call timed out after 2s")
    assert rule.matches("Request timeout") and rule.matches("connect ETIMEDOUT 10.0.0.1:443")
    assert rule.matches("", json.dumps([PYTHON_TRACEBACK])) and rule.matches(None, json.dumps(["TimeoutError: x\n at f"]))
    assert not rule.matches("boom", json.dumps(["Traceback (most recent call last):\nValueError: boom"]))
    assert not rule.matches("timestamps differ") and not rule.matches(None)
    custom = TimeoutRule(reason_patterns=(r"^deadline",), exception_names=("DeadlineExceeded",))
    assert custom.matches("deadline exceeded") and not custom.matches("timed out")
    assert exception_name(json.dumps(["Traceback...\nbuiltins.TimeoutError"])) == "TimeoutError"
    assert exception_name("not json") == "not json" and exception_name(None) is None


def test_layout_and_parsers():
    layout = BullMQLayout("{bull}")
    assert layout.key("a:b", "wait") == "{bull}:a:b:wait" and layout.lock("q", "7") == "{bull}:q:7:lock"
    assert layout.metrics("q", "failed") == "{bull}:q:metrics:failed"
    assert layout.queue_of_meta_key("{bull}:a:b:meta") == "a:b" and layout.queue_of_meta_key("bull:a:meta") is None
    assert BullMQLayout("b[1]*").meta_pattern == r"b\[1\]\*:*:meta" and glob_escape("a?") == r"a\?"
    known = ["mail", "a:w:b"]
    node = base64.b64encode(b"mail").decode()
    assert worker_client("bull:mail", "bull", known) == WorkerClient("mail", None, "python")
    assert worker_client("bull:a:w:b:w:x", "bull", known) == WorkerClient("a:w:b", "x", "python")
    assert worker_client(f"bull:{node}:w:n1", "bull", known) == WorkerClient("mail", "n1", "node")
    assert worker_client(f"bull:{node}:qe", "bull", known) is None
    fresh = base64.b64encode(b"reports:daily").decode()
    assert worker_client(f"bull:{fresh}", "bull", []) == WorkerClient("reports:daily", None, "node")
    assert worker_client(f"bull:{fresh}:qe", "bull", []) is None
    assert worker_client("bull:plain-q:w:w1", "bull", []) == WorkerClient("plain-q", "w1", "python")
    assert worker_client("rq:worker:x", "bull", known) is None and worker_client("bull:", "bull", known) is None
    assert client_host("127.0.0.1:5000") == "127.0.0.1" and client_host("[::1]:5000") == "::1"
    state = ThroughputState("events", 3, None, "1700000000000-2")
    assert ThroughputState.from_text(state.to_text()) == state
    assert ThroughputState.from_text("garbage") is None and ThroughputState.from_text('{"src":"x"}') is None
    assert (counter_delta(10, 7), counter_delta(3, 7), counter_delta(None, 7), counter_delta(4, None)) == (3, 3, 0, 4)
    tally = tally_events([(b"1-0", {b"event": b"completed", b"jobId": b"1"}),
                          (b"2-0", {b"event": b"failed", b"jobId": b"2", b"failedReason": b"boom"}),
                          (b"3-0", {b"event": b"active", b"jobId": b"3"})])
    assert (tally.completed, tally.failures, tally.last_id) == (1, [("2", "boom")], "3-0")


def test_throughput_switches_and_guards_without_redis():
    def step(prev, snap, source="auto", count_all=False, cap=100):
        return advance_throughput(prev, snap, source=source, count_all=count_all, events_cap=cap)

    base = step(None, CounterSnapshot((None, None), "5-0"))
    assert (base.finished, base.state) == (0, ThroughputState("events", None, None, "5-0"))
    done = [(f"{i}-0", {"event": "completed"}) for i in (6, 7)] + [("8-0", {"event": "failed", "jobId": "9",
                                                                              "failedReason": "x"})]
    counted = step(base.state, CounterSnapshot((2, 1), "8-0", done, "1-0"))
    assert (counted.finished, counted.failed, counted.failures, counted.source) == (2, 1, [("9", "x")], "events")
    assert counted.state == ThroughputState("metrics", 2, 1, "8-0") and not counted.events_gap
    metered = step(counted.state, CounterSnapshot((5, 1), "12-0", set_gains=(3, 0)))
    assert (metered.finished, metered.failed, metered.source, metered.state.source) == (3, 0, "metrics", "metrics")
    lagging = step(metered.state, CounterSnapshot((6, 1), "15-0", set_gains=(4, 0)))
    assert (lagging.finished, lagging.state.source, lagging.state.distrust_metrics) == (4, "events", True)
    stays = step(lagging.state, CounterSnapshot((6, 1), "16-0", [("16-0", {"event": "completed"})], "15-0"))
    assert (stays.finished, stays.state.source) == (1, "events")
    gap = step(stays.state, CounterSnapshot((6, 1), "99-0", [("50-0", {"event": "completed"})], "50-0"))
    assert gap.events_gap and gap.finished == 1
    capped = step(base.state, CounterSnapshot((2, 0), "9-0", done[:2], "1-0"), cap=2)
    assert capped.state == ThroughputState("events", 2, 0, "7-0")
    gone = step(metered.state, CounterSnapshot((None, None), "20-0"))
    assert (gone.finished, gone.state) == (0, ThroughputState("events", None, None, "12-0"))
    reset = step(metered.state, CounterSnapshot((2, 0), "20-0"))
    assert (reset.finished, reset.failed) == (2, 0)
    everything = step(None, CounterSnapshot((7, 2), "20-0", done, "1-0"), count_all=True)
    assert (everything.finished, everything.failed, everything.failures) == (7, 2, None)
    forced = step(None, CounterSnapshot((None, None), "20-0", done, "1-0"), source="events", count_all=True)
    assert (forced.finished, forced.failed, forced.state.source) == (2, 1, "events")


def test_counts_equal_bullmqs_own(redis_url, redis_client):
    add_jobs(redis_url, "alpha:with:colons", [({"sleep_s": 0}, {})] * 3 + [({"fail": "boom"}, {})])
    run_worker(redis_url, "alpha:with:colons")
    priorities = [1, 2, 3, 5, 6, 8, 10, 50]
    add_jobs(redis_url, "alpha:with:colons", [({}, {})] * 4 + [({}, {"priority": p}) for p in priorities]
             + [({}, {"delay": 3_600_000})] * 2)
    asyncio.run(_add_flow(redis_url))
    add_jobs(redis_url, "tagged", [({}, {}), ({}, {"priority": 7})], prefix="{bull}")
    add_jobs(redis_url, "busy", [({"sleep_s": 30}, {}), ({}, {})])
    worker = start_worker(redis_url, "busy")
    try:
        wait_until(lambda: redis_client.llen("bull:busy:active") == 1)
        reading = BullMQReader(redis_client, prefixes=("bull", "{bull}")).read({})
        queues = by_name(reading)
        assert sorted(queues) == ["alpha:with:colons", "busy", "kids", "{bull}:tagged"]
        for name, got in queues.items():
            prefix, _, queue = name.rpartition(":") if name.startswith("{") else ("bull", "", name)
            counts = on_queue(redis_url, queue, "getJobCounts", prefix=prefix)
            assert (got.waiting, got.active, got.scheduled, got.deferred, got.failed, got.completed) == (
                counts["waiting"] + counts["prioritized"], counts["active"], counts["delayed"],
                counts["waiting-children"], counts["failed"], counts["completed"]), name
    finally:
        kill(worker)
    alpha = queues["alpha:with:colons"]
    assert (alpha.waiting, alpha.scheduled, alpha.deferred, alpha.failed, alpha.completed) == (12, 2, 1, 1, 3)
    assert queues["busy"].active == 1 and reading.round_trips == 2 + 3
    per_priority = on_queue(redis_url, "alpha:with:colons", "getCountsPerPriority", [0] + priorities)
    expected: dict[int, int] = {}
    for priority, count in per_priority.items():
        expected[priority_tier(int(priority))] = expected.get(priority_tier(int(priority)), 0) + count
    reader = BullMQReader(redis_client, prefixes=("bull", "{bull}"))
    reader.read({})
    extras = reader.last_extras["alpha:with:colons"]
    assert {t: c for t, c in extras.priority_counts.items() if c} == expected == {1: 1, 3: 2, 5: 5, 7: 1, 10: 3}
    assert reader.last_extras["{bull}:tagged"].priority_counts[7] == 1
    assert reader.last_extras["{bull}:tagged"].prefix == "{bull}" and not extras.paused
    oldest = int(redis_client.hget("bull:alpha:with:colons:" + redis_client.lindex("bull:alpha:with:colons:wait",
                                                                                    -1).decode(), "timestamp"))
    assert alpha.oldest_enqueued_at_s == pytest.approx(oldest / 1000, abs=0.01)


async def _add_flow(url: str) -> None:
    flow = FlowProducer({"connection": url})
    await flow.add({"name": "parent", "queueName": "alpha:with:colons", "data": {},
                    "children": [{"name": "child", "queueName": "kids", "data": {}} for _ in range(2)]})
    await flow.close()


def test_paused_queue_is_shown_paused(redis_url, redis_client):
    add_jobs(redis_url, "held", [({}, {}), ({}, {"priority": 2})])
    add_jobs(redis_url, "running", [({}, {})])
    on_queue(redis_url, "held", "pause")
    reader = BullMQReader(redis_client)
    reading = by_name(reader.read({}))
    assert reader.last_extras["held"].paused and not reader.last_extras["running"].paused
    assert reading["held"].waiting == 2 == sum(on_queue(redis_url, "held", "getJobCounts", "waiting",
                                                        "prioritized").values())
    on_queue(redis_url, "held", "resume")
    reader.read({})
    assert not reader.last_extras["held"].paused


def test_durations_failures_and_timeouts(redis_url, redis_client):
    durations_s = (0.1, 0.2, 0.3)
    ok_ids = add_jobs(redis_url, "timing", [({"sleep_s": d}, {}) for d in durations_s])
    failed_id, wait_for_id, text_id = add_jobs(redis_url, "timing", [
        ({"fail": "boom"}, {}), ({"wait_for_s": 0.2, "sleep_s": 5}, {}),
        ({"fail": "upstream call timed out after 2s"}, {})])
    reader = BullMQReader(redis_client)
    baseline = reader.read({})
    assert by_name(baseline)["timing"].cursor.finished_score == 0.0
    run_worker(redis_url, "timing", **METRICS)

    second = reader.read(cursors_of(baseline))
    got = by_name(second)["timing"]

    assert (got.new_finished, got.new_failed, got.new_timeouts) == (3, 3, 2)
    samples = {job.job_id: job for job in got.sampled_jobs}
    assert set(samples) == {*ok_ids, failed_id, wait_for_id, text_id}
    for job_id, duration_s in zip(ok_ids, durations_s):
        assert not samples[job_id].failed
        assert duration_s * 1000 - 5 <= samples[job_id].processing_ms <= duration_s * 1000 + 150
        assert 0 <= samples[job_id].wait_ms < 10_000
    assert samples[wait_for_id].timed_out and samples[text_id].timed_out and not samples[failed_id].timed_out
    assert samples[wait_for_id].processing_ms == pytest.approx(200, abs=150)
    assert reader.last_extras["timing"].throughput_source == "events"

    add_jobs(redis_url, "timing", [({"fail": "boom"}, {}), ({"wait_for_s": 0.05, "sleep_s": 1}, {})])
    run_worker(redis_url, "timing", **METRICS)
    again = by_name(reader.read(cursors_of(second)))["timing"]
    assert reader.last_extras["timing"].throughput_source == "metrics"
    assert (again.new_finished, again.new_failed, again.new_timeouts) == (0, 2, 1)


def test_stalled_job_counted_then_failed_as_timeout(redis_url, redis_client):
    [job_id] = add_jobs(redis_url, "stall", [({"sleep_s": 30}, {})])
    reader = BullMQReader(redis_client)
    baseline = reader.read({})
    worker = start_worker(redis_url, "stall", lockDuration=1000)
    wait_until(lambda: redis_client.llen("bull:stall:active") == 1)
    kill(worker)
    wait_until(lambda: not redis_client.exists(f"bull:stall:{job_id}:lock"), timeout_s=5)
    stuck = by_name(reader.read(cursors_of(baseline)))["stall"]
    assert (stuck.active, reader.last_extras["stall"].stalled) == (1, 1)

    run_worker(redis_url, "stall", lockDuration=1000, stalledInterval=200, maxStalledCount=0)
    failed = by_name(reader.read(cursors_of(baseline)))["stall"]
    assert (failed.active, failed.new_failed, failed.new_timeouts, reader.last_extras["stall"].stalled) == (
        0, 1, 1, 0)
    assert redis_client.hget(f"bull:stall:{job_id}", "failedReason").decode() == STALLED_REASON


@pytest.mark.parametrize("metrics", [True, False])
def test_throughput_survives_remove_on_complete(redis_url, redis_client, metrics):
    reader = BullMQReader(redis_client)
    baseline = reader.read({})
    add_jobs(redis_url, "trim", [({}, {})] * 12)
    run_worker(redis_url, "trim", removeOnComplete=2 if metrics else True, **(METRICS if metrics else {}))
    first = reader.read(cursors_of(baseline), unseen=Cursor(0.0, 0.0))
    add_jobs(redis_url, "trim", [({}, {})] * 5)
    run_worker(redis_url, "trim", removeOnComplete=2 if metrics else True, **(METRICS if metrics else {}))

    got = by_name(reader.read(cursors_of(first)))["trim"]

    assert by_name(first)["trim"].new_finished == 12 and got.new_finished == 5
    assert got.completed == (2 if metrics else 0)
    assert reader.last_extras["trim"].throughput_source == ("metrics" if metrics else "events")


def test_cursors_never_double_count_across_cycles_restarts_and_source_switches(redis_url, redis_client):
    add_jobs(redis_url, "cur", [({}, {})] * 2)
    run_worker(redis_url, "cur")
    first = BullMQReader(redis_client).read({}, unseen=Cursor(0.0, 0.0))
    assert by_name(first)["cur"].new_finished == 2

    add_jobs(redis_url, "cur", [({}, {})] * 5 + [({"fail": "boom"}, {})])
    run_worker(redis_url, "cur")
    reader = BullMQReader(redis_client, events_per_cycle=4)
    cursors, finished, failed, cycles = cursors_of(first), 0, 0, 0
    while cycles < 50:
        got = by_name(reader.read(cursors))["cur"]
        finished, failed, cycles = finished + got.new_finished, failed + got.new_failed, cycles + 1
        if cursors_of_one(got) == cursors:
            break
        cursors = cursors_of_one(got)
    assert (finished, failed) == (5, 1) and cycles > 5

    restarted = by_name(BullMQReader(redis_client).read(cursors))["cur"]
    assert (restarted.new_finished, restarted.new_failed) == (0, 0)
    add_jobs(redis_url, "cur", [({}, {})] * 3)
    run_worker(redis_url, "cur", **METRICS)
    switched = BullMQReader(redis_client)
    counted = by_name(switched.read(cursors_of_one(restarted)))["cur"]
    assert counted.new_finished == 3 and switched.last_extras["cur"].throughput_source == "events"
    add_jobs(redis_url, "cur", [({}, {})] * 2)
    run_worker(redis_url, "cur", **METRICS)
    later = by_name(switched.read(cursors_of_one(counted)))["cur"]
    assert later.new_finished == 2 and switched.last_extras["cur"].throughput_source == "metrics"
    again = by_name(BullMQReader(redis_client).read(cursors_of_one(later)))["cur"]
    assert (again.new_finished, again.new_failed) == (0, 0)


def test_workers_without_metrics_move_the_queue_to_events(redis_url, redis_client):
    add_jobs(redis_url, "mixed", [({}, {})])
    reader = BullMQReader(redis_client)
    readings = [reader.read({})]
    for count, worker_opts in ((3, METRICS), (4, {}), (2, METRICS), (1, {})):
        add_jobs(redis_url, "mixed", [({}, {})] * count)
        run_worker(redis_url, "mixed", **worker_opts)
        readings.append(reader.read(cursors_of(readings[-1])))
    assert [by_name(r)["mixed"].new_finished for r in readings[1:]] == [3 + 1, 4, 2, 1]
    assert reader.last_extras["mixed"].throughput_source == "events"


def test_decoded_and_raw_replies_read_the_same(redis_url, redis_client):
    add_jobs(redis_url, "dec", [({"sleep_s": 0.01}, {}), ({"fail": "timed out"}, {})])
    run_worker(redis_url, "dec", **METRICS)
    add_jobs(redis_url, "dec", [({}, {}), ({}, {"priority": 9})])
    decoded = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        raw, text_ = (BullMQReader(c).read({}, unseen=Cursor(0.0, 0.0)) for c in (redis_client, decoded))
    finally:
        decoded.close()
    assert raw.queues == text_.queues and len(raw.queues[0].sampled_jobs) == 2
    assert (raw.queues[0].new_finished, raw.queues[0].new_failed, raw.queues[0].new_timeouts) == (1, 1, 1)


def cursors_of_one(queue) -> dict[str, Cursor]:
    return {queue.queue_name: queue.cursor}
