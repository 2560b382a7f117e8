"""The RQ reader against a real redis-server and real RQ workers; the layout and parsers without Redis."""
from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
import redis
import rq
from rq import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from core.model import Cursor
from collector.roundtrips import CountingRedis
from collector.rq_layout import (
    RQLayout,
    decode_job_exc_info,
    decode_result_exc_string,
    is_timeout,
    job_id_of_execution,
    parse_timestamp_s,
)
from collector.rq_reader import RQReader
from tests.collector import rq_jobs
from tests.conftest import REPO_ROOT

RQ_MAJOR = int(rq.__version__.split(".")[0])
TIMEOUT_TRACEBACK = ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
                     "rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (1 seconds)\n")
READ_COMMANDS = {"time", "smembers", "llen", "zcard", "lrange", "zcount", "zrevrangebyscore", "hgetall",
                 "hget", "hmget", "xrevrange", "multi", "exec", "client|setinfo", "hello", "select", "ping"}


def _worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _rq_command(url: str, *queues: str, burst: bool = True) -> list[str]:
    return [str(Path(sys.executable).parent / "rq"), "worker", *(["--burst"] if burst else []), "--url", url,
            *queues]


def run_burst_worker(url: str, *queues: str) -> None:
    """Run a real `rq worker --burst` until the queues are empty."""
    subprocess.run(_rq_command(url, *queues), cwd=REPO_ROOT, env=_worker_env(), check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_busy_worker(url: str, client: redis.Redis, queue_name: str, job_id: str) -> subprocess.Popen:
    """A real long-running `rq worker` (its own process group), returned once it has started `job_id`."""
    worker = subprocess.Popen(_rq_command(url, queue_name, burst=False), cwd=REPO_ROOT, env=_worker_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while client.hget(f"rq:job:{job_id}", "status") != b"started":
        if time.monotonic() >= deadline:
            os.killpg(worker.pid, signal.SIGKILL)
            raise AssertionError("the worker never started the job")
        time.sleep(0.05)
    return worker


def cursors_of(reading) -> dict[str, Cursor]:
    return {q.queue_name: q.cursor for q in reading.queues}


def by_name(reading) -> dict:
    return {q.queue_name: q for q in reading.queues}


def redis_time_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def rq_stamp(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{int(epoch_s % 1 * 1e6):06d}Z"


def snapshot(client: redis.Redis) -> dict:
    """Every key's type, serialized value and whether it expires."""
    return {key: (client.type(key), client.dump(key), client.pttl(key) > 0)
            for key in client.scan_iter(count=1000)}


def test_layout_default_and_custom_prefix():
    default = RQLayout()
    assert (default.queues_set, default.queue("q"), default.started("q"), default.job("j")) == (
        "rq:queues", "rq:queue:q", "rq:wip:q", "rq:job:j")
    assert RQLayout.for_version(2, {"RQ_KEY_PREFIX": "app"}) == default
    custom = RQLayout.for_version(3, {"RQ_KEY_PREFIX": "app"})
    assert [custom.queues_set, custom.queue("q"), custom.started("q"), custom.scheduled("q"),
            custom.deferred("q"), custom.finished("q"), custom.failed("q"), custom.canceled("q"),
            custom.ready("q"), custom.job("j"), custom.results("j"), custom.workers_set, custom.worker("w"),
            custom.worker_executions("w")] == [
        "app:queues", "app:queue:q", "app:wip:q", "app:scheduled:q", "app:deferred:q", "app:finished:q",
        "app:failed:q", "app:canceled:q", "app:ready:q", "app:job:j", "app:results:j", "app:workers",
        "app:worker:w", "app:worker:w:executions"]
    assert custom.queue_name("app:queue:a:b") == "a:b" and custom.queue_name("rq:queue:a") is None
    assert custom.worker_name("app:worker:w1") == "w1"
    assert RQLayout.for_version(3, {}) == default


def test_parsers():
    assert parse_timestamp_s("2024-01-02T03:04:05.250000Z") == pytest.approx(1704164645.25)
    assert parse_timestamp_s(b"2024-01-02T03:04:05Z") == 1704164645.0
    assert parse_timestamp_s("") is None and parse_timestamp_s(None) is None
    assert parse_timestamp_s("x") is None
    assert is_timeout(TIMEOUT_TRACEBACK) and is_timeout("JobTimeoutException: late")
    assert not is_timeout("Traceback...\nValueError: JobTimeoutException mentioned in a message")
    assert not is_timeout("Work-horse terminated unexpectedly; waitpid returned 9") and not is_timeout(None)
    encoded = base64.b64encode(zlib.compress(TIMEOUT_TRACEBACK.encode())).decode()
    assert decode_result_exc_string(encoded) == TIMEOUT_TRACEBACK and decode_result_exc_string("%%%") is None
    assert decode_job_exc_info(zlib.compress(b"trace")) == "trace"
    assert decode_job_exc_info(b"plain") == "plain" and decode_job_exc_info(None) is None
    assert job_id_of_execution(b"job-1:exec-9") == "job-1" and job_id_of_execution("bare") == "bare"


def test_counts_equal_rqs_own(redis_url, redis_client):
    queue = Queue("alpha", connection=redis_client)
    for _ in range(3):
        queue.enqueue(rq_jobs.noop)
    queue.enqueue(rq_jobs.fail)
    run_burst_worker(redis_url, "alpha")
    waiting = [queue.enqueue(rq_jobs.noop) for _ in range(4)]
    queue.enqueue_in(datetime.timedelta(hours=1), rq_jobs.noop)
    queue.enqueue(rq_jobs.noop, depends_on=waiting[-1])
    Queue("beta", connection=redis_client).enqueue(rq_jobs.noop)

    reading = RQReader(redis_client).read({})

    assert sorted(by_name(reading)) == ["alpha", "beta"]
    for name, got in by_name(reading).items():
        expected = {
            "waiting": Queue(name, connection=redis_client).count,
            "active": StartedJobRegistry(name, redis_client).get_job_count(cleanup=False),
            "scheduled": ScheduledJobRegistry(name, redis_client).get_job_count(cleanup=False),
            "deferred": DeferredJobRegistry(name, redis_client).get_job_count(cleanup=False),
            "failed": FailedJobRegistry(name, redis_client).get_job_count(cleanup=False),
            "completed": FinishedJobRegistry(name, redis_client).get_job_count(cleanup=False),
        }
        assert {k: getattr(got, k) for k in expected} == expected
    alpha = by_name(reading)["alpha"]
    assert (alpha.waiting, alpha.scheduled, alpha.deferred, alpha.failed, alpha.completed) == (4, 1, 1, 1, 3)
    assert alpha.oldest_enqueued_at_s == pytest.approx(waiting[0].enqueued_at.timestamp(), abs=1e-3)
    assert reading.round_trips == 3 and abs(reading.read_at_s - time.time()) < 5


def test_durations_timeouts_and_failures(redis_url, redis_client):
    queue = Queue("timing", connection=redis_client)
    durations_s = (0.1, 0.2, 0.3)
    ok_ids = {queue.enqueue(rq_jobs.sleep_for, d).id: d for d in durations_s}
    failed_id = queue.enqueue(rq_jobs.fail).id
    timeout_id = queue.enqueue(rq_jobs.sleep_for, 5, job_timeout=1).id
    reader = RQReader(redis_client, settle_s=0)
    baseline = reader.read({})
    assert by_name(baseline)["timing"].cursor == Cursor(0.0, 0.0)
    run_burst_worker(redis_url, "timing")

    got = by_name(reader.read(cursors_of(baseline)))["timing"]

    assert (got.new_finished, got.new_failed, got.new_timeouts) == (3, 2, 1)
    samples = {job.job_id: job for job in got.sampled_jobs}
    assert set(samples) == {*ok_ids, failed_id, timeout_id}
    for job_id, duration_s in ok_ids.items():
        assert not samples[job_id].failed
        assert duration_s * 1000 - 5 <= samples[job_id].processing_ms <= duration_s * 1000 + 150
        assert samples[job_id].wait_ms is not None
    assert samples[timeout_id].failed and samples[timeout_id].timed_out
    assert samples[timeout_id].processing_ms == pytest.approx(1000, abs=300)
    assert samples[failed_id].failed and not samples[failed_id].timed_out


def test_cursors_count_each_finish_once_across_cycles_and_restarts(redis_url, redis_client):
    queue = Queue("cur", connection=redis_client)
    queue.enqueue(rq_jobs.noop)
    queue.enqueue(rq_jobs.noop, result_ttl=-1)
    run_burst_worker(redis_url, "cur")
    time.sleep(1.05)
    reader = RQReader(redis_client, settle_s=1.0)
    first = reader.read({})
    assert (by_name(first)["cur"].new_finished, by_name(first)["cur"].sampled_jobs) == (0, [])
    assert by_name(first)["cur"].cursor.finished_score < float("inf")

    for _ in range(3):
        queue.enqueue(rq_jobs.noop)
    queue.enqueue(rq_jobs.fail)
    run_burst_worker(redis_url, "cur")
    early = reader.read(cursors_of(first))
    time.sleep(1.1)
    settled = reader.read(cursors_of(early))
    early_q, settled_q = by_name(early)["cur"], by_name(settled)["cur"]
    assert early_q.new_finished + settled_q.new_finished == 3
    assert early_q.new_failed + settled_q.new_failed == 1
    assert len(early_q.sampled_jobs) + len(settled_q.sampled_jobs) == 4
    assert settled_q.completed == 5

    again = RQReader(redis_client).read(cursors_of(settled))
    assert (by_name(again)["cur"].new_finished, by_name(again)["cur"].new_failed) == (0, 0)
    queue.enqueue(rq_jobs.noop)
    queue.enqueue(rq_jobs.noop)
    run_burst_worker(redis_url, "cur")
    time.sleep(1.1)
    restarted = RQReader(redis_client, settle_s=1.0).read(cursors_of(settled))
    assert (by_name(restarted)["cur"].new_finished, by_name(restarted)["cur"].new_failed) == (2, 0)


def test_newest_score_is_held_back_until_it_settles(redis_client):
    now_s = redis_time_s(redis_client)
    redis_client.sadd("rq:queues", "rq:queue:held")

    def finish(job_id: str, score: float, ended_s: float) -> None:
        redis_client.hset(f"rq:job:{job_id}", mapping={"status": "finished",
                                                       "started_at": rq_stamp(ended_s - 1),
                                                       "ended_at": rq_stamp(ended_s)})
        redis_client.zadd("rq:finished:held", {job_id: score})

    finish("a", 1000.0, now_s - 30)
    finish("b", 1001.0, now_s)
    reader = RQReader(redis_client)
    first = by_name(reader.read({"held": Cursor(0.0, 0.0)}))["held"]
    assert (first.new_finished, first.cursor.finished_score) == (1, 1000.0)
    assert [job.job_id for job in first.sampled_jobs] == ["a"]

    finish("c", 1001.0, now_s)
    for job_id in ("b", "c"):
        redis_client.hset(f"rq:job:{job_id}", "ended_at", rq_stamp(now_s - 10))
    second = by_name(reader.read({"held": first.cursor}))["held"]
    assert (second.new_finished, second.cursor.finished_score) == (2, 1001.0)
    assert sorted(job.job_id for job in second.sampled_jobs) == ["b", "c"]


def test_timeouts_are_scaled_when_the_sample_is_cut(redis_client):
    redis_client.sadd("rq:queues", "rq:queue:cut")
    encoded = base64.b64encode(zlib.compress(TIMEOUT_TRACEBACK.encode())).decode()
    for i in range(4):
        redis_client.hset(f"rq:job:t{i}", mapping={"status": "failed", "ended_at": rq_stamp(1000.0 + i)})
        redis_client.zadd("rq:failed:cut", {f"t{i}": 2000.0 + i})
        if i >= 2:
            redis_client.xadd(f"rq:results:t{i}", {"type": 2, "exc_string": encoded})

    got = by_name(RQReader(redis_client, sample_jobs=2).read({"cut": Cursor(0.0, 0.0)}))["cut"]

    assert [job.job_id for job in got.sampled_jobs] == ["t3", "t2"]
    assert (got.new_failed, got.new_timeouts, got.cursor.failed_score) == (4, 4, 2003.0)


@pytest.mark.parametrize("decode_responses", [False, True])
def test_missing_and_malformed_jobs_are_skipped(redis_url, redis_client, decode_responses):
    now_s = redis_time_s(redis_client)
    redis_client.sadd("rq:queues", "rq:queue:messy")
    redis_client.rpush("rq:queue:messy", "gone-1", "gone-2", "real")
    redis_client.hset("rq:job:real", mapping={"status": "queued", "enqueued_at": rq_stamp(now_s - 60)})
    redis_client.zadd("rq:finished:messy", {"gone-3": 900.0, "garbled": 901.0})
    redis_client.hset("rq:job:garbled", mapping={"status": "finished", "started_at": "yesterday",
                                                 "ended_at": ""})
    redis_client.zadd("rq:failed:messy", {"gone-4": 900.0, "old-rq": 900.0})
    redis_client.hset("rq:job:old-rq", mapping={"status": "failed", "ended_at": rq_stamp(now_s - 60),
                                                "exc_info": zlib.compress(TIMEOUT_TRACEBACK.encode())})
    redis_client.set("rq:wip:messy", "not a zset")
    client = redis.Redis.from_url(redis_url, decode_responses=decode_responses)

    got = by_name(RQReader(client).read({"messy": Cursor(0.0, 0.0)}))["messy"]

    assert got.oldest_enqueued_at_s == pytest.approx(now_s - 60, abs=1e-3)
    assert (got.waiting, got.active, got.new_finished, got.new_failed) == (3, 0, 2, 2)
    samples = [(job.job_id, job.failed, job.processing_ms) for job in got.sampled_jobs]
    assert samples == [("garbled", False, None), ("old-rq", True, None)]
    assert got.new_timeouts == (0 if decode_responses else 2)
    client.close()


def test_a_read_changes_nothing_even_with_expired_entries_and_dead_workers(redis_url, redis_client):
    queue = Queue("ro", connection=redis_client)
    queue.enqueue(rq_jobs.noop)
    queue.enqueue(rq_jobs.fail)
    run_burst_worker(redis_url, "ro")
    queue.enqueue(rq_jobs.noop)
    queue.enqueue_in(datetime.timedelta(hours=1), rq_jobs.noop)
    redis_client.zadd("rq:wip:ro", {"abandoned:exec-1": 1000.0})
    redis_client.zadd("rq:finished:ro", {"expired": 1000.0})
    redis_client.sadd("rq:workers", "rq:worker:gone", "rq:worker:silent")
    redis_client.hset("rq:worker:silent", mapping={"last_heartbeat": rq_stamp(time.time() - 3600),
                                                   "pid": "1"})
    redis_client.execute_command("ACL", "SETUSER", "qw_reader", "on", ">secret", "~*", "&*", "resetchannels",
                                 "-@all", "+@read", "+multi", "+exec", "+time", "+ping",
                                 "+hello", "+select")
    reader_client = redis.Redis.from_url(redis_url, username="qw_reader", password="secret")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader_client.set("probe", "1")
        before = snapshot(redis_client)
        redis_client.config_resetstat()
        reading = RQReader(reader_client).read({"ro": Cursor(0.0, 0.0)})
        stats = redis_client.info("commandstats")
        assert snapshot(redis_client) == before
    finally:
        reader_client.close()
        redis_client.execute_command("ACL", "DELUSER", "qw_reader")
    used = {name.removeprefix("cmdstat_") for name in stats} - {"info", "config|resetstat"}
    assert used <= READ_COMMANDS, used - READ_COMMANDS
    got = by_name(reading)["ro"]
    assert (got.active, got.completed) == (1, 2)
    assert {w.name: w.alive for w in reading.workers} == {"gone": False, "silent": False}
    StartedJobRegistry("ro", redis_client).get_job_count()
    assert snapshot(redis_client) != before


def test_constant_round_trips_for_1_and_20_queues(redis_client):
    def fill(queue_count: int) -> tuple[int, int]:
        redis_client.flushall()
        redis_client.sadd("rq:workers", "rq:worker:w")
        redis_client.hset("rq:worker:w", mapping={"last_heartbeat": rq_stamp(time.time()), "queues": "q0"})
        for i in range(queue_count):
            Queue(f"q{i}", connection=redis_client).enqueue(rq_jobs.noop)
            redis_client.zadd(f"rq:finished:q{i}", {f"f{i}": 2000.0})
            redis_client.zadd(f"rq:failed:q{i}", {f"x{i}": 2000.0})
        client = CountingRedis(connection_pool=redis_client.connection_pool)
        reading = RQReader(client).read({f"q{i}": Cursor(1000.0, 1000.0) for i in range(queue_count)})
        assert len(reading.queues) == queue_count
        assert all(q.new_finished == 1 and q.new_failed == 1 for q in reading.queues)
        return reading.round_trips, client.round_trips

    assert fill(1) == fill(20) == (3, 3)


def test_live_worker_then_killed_worker(redis_url, redis_client):
    queue = Queue("live", connection=redis_client)
    job = queue.enqueue(rq_jobs.sleep_for, 20)
    worker = start_busy_worker(redis_url, redis_client, "live", job.id)
    try:
        reader = RQReader(redis_client)
        busy = reader.read({})
        assert by_name(busy)["live"].active == 1
        [seen] = busy.workers
        assert (seen.alive, seen.state, seen.pid, seen.queues) == (True, "busy", worker.pid, ["live"])
        assert seen.current_job_id == job.id and seen.birth_at_s and seen.last_heartbeat_at_s
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    [dead] = reader.read({}).workers
    assert (dead.name, dead.alive, dead.state) == (seen.name, False, "stale")
    assert redis_client.exists(f"rq:worker:{seen.name}")
    [still] = RQReader(redis_client, pid_alive=None).read({}).workers
    assert still.alive
    redis_client.delete(f"rq:worker:{seen.name}")
    [expired] = RQReader(redis_client, pid_alive=None).read({}).workers
    assert (expired.alive, expired.state, expired.pid) == (False, "stale", None)


def test_worker_executions_set_gives_the_current_job(redis_client):
    redis_client.sadd("rq:workers", "rq:worker:w3")
    redis_client.hset("rq:worker:w3", mapping={"last_heartbeat": rq_stamp(time.time()), "state": "busy",
                                               "queues": "a,b", "successful_job_count": "7",
                                               "failed_job_count": "2", "hostname": "elsewhere", "pid": "1"})
    redis_client.sadd("rq:worker:w3:executions", "job-9:exec-1")
    [worker] = RQReader(redis_client).read({}).workers
    assert (worker.alive, worker.current_job_id, worker.queues, worker.jobs_processed) == (True, "job-9",
                                                                                          ["a", "b"], 9)


@pytest.mark.skipif(RQ_MAJOR < 3, reason="needs rq>=3 installed")
def test_rq3_layout_with_custom_prefix(redis_url, redis_client):
    script = textwrap.dedent("""
        import json, sys
        import redis
        from rq import Queue, SimpleWorker
        from rq.registry import FailedJobRegistry, FinishedJobRegistry
        from tests.collector import rq_jobs
        conn = redis.Redis.from_url(sys.argv[1])
        queue = Queue("three", connection=conn)
        for _ in range(2):
            queue.enqueue(rq_jobs.noop)
        queue.enqueue(rq_jobs.fail)
        SimpleWorker([queue], connection=conn).work(burst=True)
        queue.enqueue(rq_jobs.noop)
        print(json.dumps({"waiting": queue.count,
                          "failed": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
                          "completed": FinishedJobRegistry(queue=queue).get_job_count(cleanup=False)}))
    """)
    out = subprocess.run([sys.executable, "-c", script, redis_url], cwd=REPO_ROOT, check=True, timeout=60,
                         capture_output=True, text=True, env={**_worker_env(), "RQ_KEY_PREFIX": "qw3"})
    expected = json.loads(out.stdout.strip().splitlines()[-1])
    assert not list(redis_client.scan_iter("rq:*"))
    reader = RQReader(redis_client, key_prefix="qw3", settle_s=0)
    got = by_name(reader.read({"three": Cursor(0.0, 0.0)}))["three"]
    assert {k: getattr(got, k) for k in expected} == expected == {"waiting": 1, "failed": 1, "completed": 2}
    assert (got.new_finished, got.new_failed) == (2, 1)
    assert all(redis_client.exists(f"qw3:job:{job.job_id}") for job in got.sampled_jobs)
    assert len(got.sampled_jobs) == 3
