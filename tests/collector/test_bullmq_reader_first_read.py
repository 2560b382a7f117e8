"""The BullMQ reader's first read (the recent past held in Redis) and its oldest-waiting rule, against real
redis-server and real Python and Node bullmq workers, checked with bullmq's own counts and the jobs' own times."""
from __future__ import annotations

import time

import pytest

from collector.bullmq_reader import BullMQReader
from collector.bullmq_recent import HeldSet, MetricsMinutes, from_metrics, recent_past
from core.model import Cursor
from tests.collector.bullmq_helpers import (
    METRICS,
    add_jobs,
    by_name,
    cursors_of,
    finished_jobs,
    nearest_rank,
    on_queue,
    run_node_worker,
    run_worker,
)
from tests.collector.test_bullmq_reader_workers import node_worker_js  # noqa: F401 - fixture

COUNT_ALL = Cursor(0.0, 0.0)
SAMPLE_JOBS = 8


def _jobs(flavor: str, count_ok: int, count_failed: int, count_timeouts: int) -> list[tuple[dict, dict]]:
    """Interleaved jobs of distinct durations; timeouts are TimeoutErrors (Python) or "timed out" reasons (Node)."""
    sleep = (lambda i: {"sleep_s": 0.005 * (i % 6 + 1)}) if flavor == "python" else (
        lambda i: {"sleep_ms": 5 * (i % 6 + 1)})
    timeout = {"wait_for_s": 0.01, "sleep_s": 1} if flavor == "python" else {"fail": "request timed out"}
    jobs = [(sleep(i), {}) for i in range(count_ok)]
    for i in range(count_failed):
        jobs.insert(3 * i + 1, ({"fail": "boom"}, {}))
    for i in range(count_timeouts):
        jobs.insert(3 * i + 2, (timeout, {}))
    return jobs


def _run(flavor: str, url: str, queue: str, worker_js, metrics: bool) -> None:
    options = METRICS if metrics else {}
    if flavor == "python":
        run_worker(url, queue, **options)
    else:
        run_node_worker(url, queue, worker_js, **options)


@pytest.mark.parametrize(("flavor", "metrics"), [("python", False), ("python", True), ("node", False),
                                                 ("node", True)])
def test_first_read_counts_and_times_what_redis_still_holds(redis_url, redis_client, node_worker_js, flavor,
                                                            metrics):  # noqa: F811
    add_jobs(redis_url, "past", _jobs(flavor, 18, 3, 3))
    _run(flavor, redis_url, "past", node_worker_js, metrics)
    add_jobs(redis_url, "quiet", [({}, {})])
    counts = on_queue(redis_url, "past", "getJobCounts")
    jobs = sorted(finished_jobs(redis_url, "past"), key=lambda job: job.finishedOn, reverse=True)
    assert (counts["completed"], counts["failed"], len(jobs)) == (18, 6, 24)

    reader = BullMQReader(redis_client, sample_jobs=SAMPLE_JOBS)
    first = reader.read({}, unseen=COUNT_ALL)
    got, quiet = by_name(first)["past"], by_name(first)["quiet"]

    assert (got.new_finished, got.new_failed, got.new_timeouts) == (counts["completed"], counts["failed"], 3)
    assert got.counted_since_s == min(job.finishedOn for job in jobs) / 1000
    assert (quiet.new_finished, quiet.new_failed, quiet.counted_since_s) == (0, 0, None)
    assert reader.last_extras["past"].throughput_source == "sets"
    newest = jobs[:SAMPLE_JOBS]
    assert sorted(job.job_id for job in got.sampled_jobs) == sorted(job.id for job in newest)
    sampled_ms = [job.processing_ms for job in got.sampled_jobs]
    own_ms = [job.finishedOn - job.processedOn for job in newest]
    for fraction in (0.50, 0.95, 0.99):
        assert nearest_rank(sampled_ms, fraction) == pytest.approx(nearest_rank(own_ms, fraction), abs=1e-3)
    waits = {job.job_id: job.wait_ms for job in got.sampled_jobs}
    assert all(waits[job.id] == pytest.approx(job.processedOn - job.timestamp, abs=1e-3) for job in newest)

    baseline = by_name(BullMQReader(redis_client).read({}))["past"]
    assert (baseline.new_finished, baseline.new_failed, baseline.sampled_jobs, baseline.counted_since_s) == (
        0, 0, [], None)

    again = reader.read(cursors_of(first), unseen=COUNT_ALL)
    assert (by_name(again)["past"].new_finished, by_name(again)["past"].new_failed) == (0, 0)
    add_jobs(redis_url, "past", _jobs(flavor, 3, 1, 1))
    _run(flavor, redis_url, "past", node_worker_js, metrics)
    later = reader.read(cursors_of(again), unseen=COUNT_ALL)
    counted = by_name(later)["past"]
    assert (counted.new_finished, counted.new_failed, counted.new_timeouts) == (3, 2, 1)
    assert counted.counted_since_s is None
    restarted = by_name(BullMQReader(redis_client).read(cursors_of(later), unseen=COUNT_ALL))["past"]
    assert (restarted.new_finished, restarted.new_failed) == (0, 0)


@pytest.mark.parametrize("source", ["auto", "metrics"])
def test_first_read_after_trimmed_sets_counts_from_events_or_metrics(redis_url, redis_client, source):
    add_jobs(redis_url, "trimmed", [({}, {})] * 10 + [({"fail": "boom"}, {})] * 3 + [({"fail": "timed out"}, {})])
    before_s = time.time()
    run_worker(redis_url, "trimmed", removeOnComplete=3, removeOnFail=1, **METRICS)
    after_s = time.time()
    counts = on_queue(redis_url, "trimmed", "getJobCounts")
    assert (counts["completed"], counts["failed"]) == (3, 1)

    reader = BullMQReader(redis_client, throughput_source=source)
    got = by_name(reader.read({}, unseen=COUNT_ALL))["trimmed"]

    assert (got.new_finished, got.new_failed) == (10, 4)
    assert reader.last_extras["trimmed"].throughput_source == ("events" if source == "auto" else "metrics")
    if source == "auto":
        assert got.new_timeouts == 1 and before_s - 0.01 <= got.counted_since_s <= after_s
    else:
        assert before_s // 60 * 60 <= got.counted_since_s <= after_s
    assert all(job.ended_at_s >= got.counted_since_s for job in got.sampled_jobs) and len(got.sampled_jobs) == 4
    add_jobs(redis_url, "trimmed", [({}, {})] * 2)
    run_worker(redis_url, "trimmed", removeOnComplete=3, removeOnFail=1, **METRICS)
    next_read = by_name(reader.read({"trimmed": got.cursor}))["trimmed"]
    assert (next_read.new_finished, next_read.new_failed, next_read.counted_since_s) == (2, 0, None)


def test_metrics_minutes_count_only_what_they_attribute():
    minute = 28_000_000
    # lifetime count 1000; 4 finishes since prevTS's minute; the three minutes before: 3, 0, 2.
    completed = MetricsMinutes(count=1000, prev_ts_ms=minute * 60_000 + 5_000, prev_count=996, points=(3, 0, 2))
    assert completed.per_minute() == {minute: 4, minute - 1: 3, minute - 2: 0, minute - 3: 2}
    assert from_metrics(completed, None).finished == 9 and from_metrics(completed, None).since_s == (
        (minute - 3) * 60.0)
    # failures known only from minute - 1 on: both kinds are counted from there.
    failed = MetricsMinutes(count=50, prev_ts_ms=(minute - 1) * 60_000, prev_count=49, points=())
    both = from_metrics(completed, failed)
    assert (both.finished, both.failed, both.since_s) == (7, 1, (minute - 1) * 60.0)
    assert MetricsMinutes.parse([b"7", b"1700000000000", None], [b"2", b"x"]).points == (2, 0)
    assert MetricsMinutes.parse([None, None, None], []) is None
    held = (HeldSet(5, 1000.0), HeldSet(1, 2000.0))
    assert recent_past(held, None, (completed, None)).source == "metrics"  # 9 > the 5 the set holds
    untrimmed = recent_past((HeldSet(20, 1000.0), HeldSet(1, 2000.0)), [], (completed, None))
    assert (untrimmed.source, untrimmed.finished, untrimmed.failed, untrimmed.since_s) == ("sets", 20, 1, 1.0)


def _oldest_timestamp_s(redis_client, queue: str, lists: tuple[str, ...] = ("wait", "paused")) -> float:
    """The smallest `timestamp` of every job waiting in the lists and `:prioritized` (read in full)."""
    ids = [m.decode() for suffix in lists for m in redis_client.lrange(f"bull:{queue}:{suffix}", 0, -1)]
    ids += [m.decode() for m in redis_client.zrange(f"bull:{queue}:prioritized", 0, -1)]
    return min(int(redis_client.hget(f"bull:{queue}:{job_id}", "timestamp")) for job_id in ids) / 1000


def _add_spaced(url: str, queue: str, jobs: list[tuple[dict, dict]]) -> None:
    for job in jobs:
        add_jobs(url, queue, [job])
        time.sleep(0.003)


def test_oldest_waiting_is_the_oldest_job_of_any_waiting_list_and_priority(redis_url, redis_client):
    _add_spaced(redis_url, "low-first", [({}, {"priority": 8})] + [({}, {"priority": 1})] * 6
                + [({}, {})] * 3 + [({}, {"priority": 30})])
    _add_spaced(redis_url, "tier-mates", [({}, {"priority": 3})] + [({}, {"priority": 2})] * 6)
    _add_spaced(redis_url, "lifo", [({}, {"lifo": True})] * 7)
    _add_spaced(redis_url, "old-paused", [({}, {})] * 7)
    redis_client.rename("bull:old-paused:wait", "bull:old-paused:paused")  # bullmq < 5 paused a queue so
    reading = by_name(BullMQReader(redis_client).read({}))

    for queue in ("low-first", "tier-mates", "lifo", "old-paused"):
        assert reading[queue].oldest_enqueued_at_s == _oldest_timestamp_s(redis_client, queue), queue
    jobs = on_queue(redis_url, "low-first", "getJobs", ["waiting", "prioritized"], 0, -1)
    assert reading["low-first"].oldest_enqueued_at_s == min(job.timestamp for job in jobs) / 1000
    assert reading["low-first"].waiting == len(jobs) == 11 and reading["old-paused"].waiting == 7
