"""The BullMQ reader's workers (CLIENT LIST, a Node worker), queue discovery and the cost of a read."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis

from collector.bullmq_layout import ThroughputState
from collector.bullmq_reader import BullMQReader
from core.model import Cursor
from collector.roundtrips import CountingRedis
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

READ_COMMANDS = {"time", "scan", "client|list", "llen", "zcard", "exists", "hmget", "zcount", "lrange", "zrange",
                 "hget", "xrevrange", "xrange", "zrevrangebyscore", "multi", "exec", "client|setinfo", "hello",
                 "select", "ping", "auth"}
NODE_DIR = Path(__file__).resolve().parent / "node"


def snapshot(client: redis.Redis) -> dict:
    """Every key's type, serialized value and whether it expires."""
    return {key: (client.type(key), client.dump(key), client.pttl(key) > 0)
            for key in client.scan_iter(count=1000)}


def test_a_read_changes_nothing(redis_url, redis_client):
    add_jobs(redis_url, "ro", [({}, {}), ({"fail": "timed out"}, {})])
    run_worker(redis_url, "ro", **METRICS)
    add_jobs(redis_url, "ro", [({}, {}), ({}, {"priority": 3}), ({}, {"delay": 600_000})])
    add_jobs(redis_url, "ro2", [({}, {})])
    run_worker(redis_url, "ro2")
    add_jobs(redis_url, "ro2", [({}, {})])
    on_queue(redis_url, "ro2", "pause")
    redis_client.lpush("bull:ro:active", "ghost")
    redis_client.rpush("bull:ro2:wait", "0:legacy-marker")
    named = redis.Redis.from_url(redis_url)
    named.client_setname("bull:ro:w:passive")
    redis_client.execute_command("ACL", "SETUSER", "qw_reader", "on", ">secret", "~*", "&*", "resetchannels",
                                 "-@all", "+@read", "+multi", "+exec", "+time", "+ping", "+hello", "+select",
                                 "+client|list")
    reader_client = redis.Redis.from_url(redis_url, username="qw_reader", password="secret")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader_client.set("probe", "1")
        before = snapshot(redis_client)
        redis_client.config_resetstat()
        reader = BullMQReader(reader_client)
        first = reader.read({})
        second = reader.read(cursors_of(first), unseen=Cursor(0.0, 0.0))
        stats = redis_client.info("commandstats")
        assert snapshot(redis_client) == before
    finally:
        reader_client.close()
        named.close()
        redis_client.execute_command("ACL", "DELUSER", "qw_reader")
    used = {name.removeprefix("cmdstat_") for name in stats} - {"info", "config|resetstat", "client|setname"}
    assert used <= READ_COMMANDS, used - READ_COMMANDS
    ro, ro2 = by_name(second)["ro"], by_name(second)["ro2"]
    assert (ro.waiting, ro.active, ro.scheduled, ro.completed, ro.failed) == (2, 1, 1, 1, 1)
    assert (ro2.waiting, reader.last_extras["ro2"].paused, reader.last_extras["ro"].stalled) == (1, True, 1)
    assert [w.name.split("#")[0] for w in second.workers] == ["ro:w:passive"]


def test_constant_round_trips_for_1_and_20_queues(redis_client):
    def fill(queue_count: int) -> tuple[int, int]:
        redis_client.flushall()
        for i in range(queue_count):
            base = f"bull:q{i}"
            redis_client.hset(f"{base}:meta", "opts.maxLenEvents", 10000)
            redis_client.rpush(f"{base}:wait", "w1")
            redis_client.hset(f"{base}:w1", mapping={"timestamp": 1000, "delay": 0})
            redis_client.hset(f"{base}:metrics:completed", "count", 1)
            for state, job_id in (("completed", "c1"), ("failed", "f1")):
                redis_client.zadd(f"{base}:{state}", {job_id: 2000})
                redis_client.hset(f"{base}:{job_id}", mapping={"timestamp": 1000, "processedOn": 1500,
                                                               "finishedOn": 2000})
        client = CountingRedis(connection_pool=redis_client.connection_pool)
        reader = BullMQReader(client)
        reader.read({})
        state = ThroughputState("metrics", 0, 0, None).to_text()
        reading = reader.read({f"q{i}": Cursor(1000.0, 1000.0, state) for i in range(queue_count)})
        assert len(reading.queues) == queue_count
        assert all(q.new_finished == 1 and len(q.sampled_jobs) == 2 for q in reading.queues)
        return reading.round_trips, client.round_trips

    assert fill(1) == fill(20) == (3, 7)


def test_workers_are_found_in_client_list(redis_url, redis_client):
    add_jobs(redis_url, "work:q", [({}, {})])
    workers = [start_worker(redis_url, "work:q", name="alpha"), start_worker(redis_url, "work:q")]
    node_name = base64.b64encode(b"node:q").decode()
    fakes = [redis.Redis.from_url(redis_url) for _ in range(2)]
    fakes[0].client_setname(f"bull:{node_name}:w:n1")
    fakes[1].client_setname(f"bull:{node_name}:qe")
    try:
        reading = BullMQReader(redis_client).read({})
    finally:
        for proc in workers:
            kill(proc)
        for fake in fakes:
            fake.close()
    found = sorted((w.name.split("#")[0], w.queues, w.hostname, w.alive, w.pid) for w in reading.workers)
    host = socket.gethostname()
    assert found == [("node:q:w:n1", ["node:q"], host, True, None), ("work:q", ["work:q"], host, True, None),
                     ("work:q:w:alpha", ["work:q"], host, True, None)]
    assert all(w.state in ("idle", "busy") and w.birth_at_s <= reading.read_at_s for w in reading.workers)
    assert sorted(by_name(reading)) == ["work:q"]


def test_discovery_follows_new_gone_and_lookalike_queues(redis_url, redis_client):
    add_jobs(redis_url, "first", [({}, {})])
    add_jobs(redis_url, "first", [({}, {"jobId": "odd:meta"})])
    reader = BullMQReader(redis_client, prefixes=("bull", "{bull}"))
    assert sorted(by_name(reader.read({}))) == ["first"]
    add_jobs(redis_url, "late:comer", [({}, {})])
    add_jobs(redis_url, "x:y", [({}, {})], prefix="{bull}")
    second = reader.read({})
    assert sorted(by_name(second)) == ["first", "late:comer", "{bull}:x:y"] and second.round_trips == 3
    on_queue(redis_url, "first", "obliterate", True)
    assert sorted(by_name(reader.read({}))) == ["late:comer", "{bull}:x:y"]
    fixed = BullMQReader(redis_client, queues=["late:comer", "never-used"])
    reading = fixed.read({})
    assert sorted(by_name(reading)) == ["late:comer", "never-used"] and reading.round_trips == 3


@pytest.fixture(scope="module")
def node_worker_js() -> Path:
    """tests/collector/node/worker.js with Node bullmq installed (`npm ci` from the lock file when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the Node bullmq worker")
    if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
    return NODE_DIR / "worker.js"


def test_node_bullmq_worker(redis_url, redis_client, node_worker_js):
    add_jobs(redis_url, "nodeq", [({"sleep_ms": 50}, {})] * 3 + [({"fail": "request timed out"}, {}),
                                                                  ({"fail": "boom"}, {})])
    reader = BullMQReader(redis_client)
    baseline = reader.read({})
    options = {"burst": False, "worker": {"name": "n1", **METRICS}}
    worker = subprocess.Popen(["node", str(node_worker_js), redis_url, "nodeq", json.dumps(options)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert worker.stdout.readline().strip() == "ready"
        wait_until(lambda: redis_client.zcard("bull:nodeq:completed") + redis_client.zcard("bull:nodeq:failed")
                   == 5)
        reading = reader.read(cursors_of(baseline))
    finally:
        kill(worker)
    got = by_name(reading)["nodeq"]
    counts = on_queue(redis_url, "nodeq", "getJobCounts")
    assert (got.completed, got.failed, got.waiting, got.active) == (counts["completed"], counts["failed"],
                                                                    counts["waiting"], counts["active"])
    assert (got.new_finished, got.new_failed, got.new_timeouts) == (3, 2, 1)
    assert all(40 <= job.processing_ms <= 250 for job in got.sampled_jobs if not job.failed)
    [seen] = reading.workers
    assert (seen.name.split("#")[0], seen.queues, seen.hostname) == ("nodeq:w:n1", ["nodeq"], socket.gethostname())
