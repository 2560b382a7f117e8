"""A real 3-master Redis Cluster: real BullMQ (Node) and RQ queues on it, counted exactly by one collector
given one node's URL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis
import rq
from redis.crc import key_slot
from sqlalchemy import func, select

from collector.cluster import ClusterReader, DetectingReader
from collector.loop import Collector
from collector.readers import build_readers, close_readers
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import queue_snapshots
from storage.status import REDIS_OUTAGE_PREFIX
from tests.collector.redis_servers import cluster_port, start_cluster, wait_for
from tests.conftest import REPO_ROOT

NODE_DIR = REPO_ROOT / "tests" / "collector" / "node"
PREFIXES = "bull,{bull}"
JOB = {"succeed": 3, "fail": 2, "waiting": 4, "delayed": 2, "prioritized": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Ports of a real 3-master Redis Cluster, flushed before each test module."""
    servers = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield servers.ports
    servers.stop()


def _masters(port: int) -> list[tuple[int, int, int]]:
    """(first slot, last slot, port) of every master."""
    slots = redis.Redis(host="127.0.0.1", port=port).execute_command("CLUSTER SLOTS")
    return [(int(entry[0]), int(entry[1]), int(entry[2][1])) for entry in slots]


def _owner(ports: list[int], key: str) -> int:
    slot = key_slot(key.encode())
    return next(port for first, last, port in _masters(ports[0]) if first <= slot <= last)


def _tagged_queues(ports: list[int], per_master: int, start: int = 0) -> list[str]:
    """Queue names `{qN}` (each its own hash tag), `per_master` of them on every master."""
    found: dict[int, list[str]] = {port: [] for port in ports}
    n = start
    while any(len(names) < per_master for names in found.values()):
        name = f"{{q{n}}}"
        owner = _owner(ports, f"bull:{name}:meta")
        if len(found[owner]) < per_master:
            found[owner].append(name)
        n += 1
    return [name for names in found.values() for name in names]


def _bullmq(ports: list[int], plan: list[dict], *, prefixes: str = PREFIXES) -> dict[str, dict]:
    """Run tests/collector/node/cluster.js: real BullMQ queues and workers over an ioredis Cluster; returns
    getJobCounts() by the name the collector reports (first prefix: the queue name, else `<prefix>:<queue>`)."""
    nodes = json.dumps([{"host": "127.0.0.1", "port": port} for port in ports])
    out = subprocess.run(["node", str(NODE_DIR / "cluster.js"), nodes, json.dumps(plan)], check=True,
                         timeout=180, capture_output=True, text=True).stdout
    first = prefixes.split(",")[0]
    return {queue if prefix == first else f"{prefix}:{queue}": counts
            for key, counts in json.loads(out.strip().splitlines()[-1]).items()
            for prefix, queue in [key.split("|", 1)]}


def _text(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key


def _flush(ports: list[int]) -> None:
    for port in ports:
        redis.Redis(host="127.0.0.1", port=port).flushall()


def _latest(engine) -> dict[str, dict]:
    t = queue_snapshots
    last = select(func.max(t.c.cycle_id)).scalar_subquery()
    with engine.connect() as conn:
        return {row["queue_name"]: dict(row) for row in conn.execute(select(t).where(t.c.cycle_id == last)).mappings()}


def _duplicates(engine) -> int:
    """Snapshots stored more than once for one queue in one cycle."""
    t = queue_snapshots
    per = select(t.c.cycle_id, t.c.library, t.c.queue_name, func.count().label("n")).group_by(
        t.c.cycle_id, t.c.library, t.c.queue_name).subquery()
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(per).where(per.c.n > 1)).scalar_one()


def _assert_counts(rows: dict[str, dict], expected: dict[str, dict]) -> None:
    for name, counts in expected.items():
        row = rows[name]
        waiting = counts["waiting"] + counts["prioritized"] + counts.get("paused", 0)
        assert (row["waiting"], row["active"], row["scheduled"], row["deferred"], row["failed"],
                row["completed"]) == (waiting, counts["active"], counts["delayed"], counts["waiting-children"],
                                      counts["failed"], counts["completed"]), name


def _collector(ports: list[int], db_url: str, **settings):
    config = load_settings(env={}, redis_url=f"redis://127.0.0.1:{ports[0]}/0", db_url=db_url, **settings)
    readers = build_readers(config)
    return Collector(config, make_engine(db_url), readers), readers


def test_bullmq_queues_on_every_master_count_as_get_job_counts(cluster, db_url):
    _flush(cluster)
    tagged = _tagged_queues(cluster, per_master=1)
    plan = [{"queue": name, "prefix": "bull", **JOB} for name in tagged]
    plan += [{"queue": "alpha", "prefix": "{bull}", "succeed": 2, "waiting": 1},
             {"queue": "beta", "prefix": "{bull}", "waiting": 3, "delayed": 1}]
    expected = _bullmq(cluster, plan)
    assert len({_owner(cluster, f"bull:{name}:meta") for name in tagged}) == 3  # one queue on every master

    collector, readers = _collector(cluster, db_url, libraries="bullmq", bullmq_prefixes=PREFIXES)
    try:
        assert [type(reader) for reader in readers] == [ClusterReader]
        assert collector.run_cycle().ok
        assert not any(reader.atomic for reader in readers[0].readers.values())  # tags of many slots
        second = collector.run_cycle()
        assert second.ok and second.error is None and second.queue_count == len(expected)
        rows = _latest(collector.engine)
        assert sorted(rows) == sorted(expected)
        _assert_counts(rows, expected)
        steady = collector.run_cycle().round_trips
        assert steady <= 1 + 3 * 3  # the slot map, then discovery, snapshot and details per master

        more = _bullmq(cluster, [{"queue": name, "prefix": "bull", "waiting": 2}
                                 for name in _tagged_queues(cluster, per_master=3, start=1000)])
        collector.run_cycle()  # the new queues are found by the incremental scan
        wait_for(lambda: collector.run_cycle().queue_count == len(expected) + len(more), "new queues found")
        _assert_counts(_latest(collector.engine), {**expected, **more})
        assert collector.run_cycle().round_trips == steady  # 14 queues cost what 5 did
        assert _duplicates(collector.engine) == 0
    finally:
        close_readers(readers)


def test_one_hash_tag_prefix_is_read_in_one_transaction_on_its_master(cluster, db_url):
    _flush(cluster)
    expected = _bullmq(cluster, [{"queue": "alpha", "prefix": "{bull}", "succeed": 2, "fail": 1, "waiting": 2},
                                 {"queue": "beta", "prefix": "{bull}", "waiting": 3, "delayed": 1}],
                       prefixes="{bull}")
    collector, readers = _collector(cluster, db_url, libraries="bullmq", bullmq_prefixes="{bull}")
    try:
        assert collector.run_cycle().ok and collector.run_cycle().ok
        _assert_counts(_latest(collector.engine), expected)
        node_readers = list(readers[0].readers.values())
        assert len(node_readers) == 3 and all(reader.atomic for reader in node_readers)
    finally:
        close_readers(readers)


def test_a_queue_whose_slot_moves_is_read_from_its_new_master(cluster, db_url):
    _flush(cluster)
    name = _tagged_queues(cluster, per_master=1)[0]
    expected = _bullmq(cluster, [{"queue": name, "prefix": "bull", **JOB}])
    collector, readers = _collector(cluster, db_url, libraries="bullmq")
    try:
        assert collector.run_cycle().ok
        source = _owner(cluster, f"bull:{name}:meta")
        target = next(port for port in cluster if port != source)
        src, dst = (redis.Redis(host="127.0.0.1", port=port) for port in (source, target))
        slot = key_slot(f"bull:{name}:meta".encode())
        src_id, dst_id = (client.execute_command("CLUSTER MYID") for client in (src, dst))
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        keys = [_text(key) for key in src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)]
        half = [key for key in keys if not key.endswith(":meta")][: len(keys) // 2]
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *half)

        midway = collector.run_cycle()  # some keys answer ASK: those figures are unavailable, nothing crashes
        assert midway.ok and midway.queue_count <= 1
        assert sum(reader.problems.reported for reader in readers[0].readers.values()) > 0  # the ASK replies

        rest = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *rest)
        for port in [target, source] + [p for p in cluster if p not in (target, source)]:
            redis.Redis(host="127.0.0.1", port=port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        wait_for(lambda: _owner(cluster, f"bull:{name}:meta") == target, "slot moved")
        wait_for(lambda: collector.run_cycle().queue_count == 1, "queue read from its new master")
        _assert_counts(_latest(collector.engine), expected)
        assert _duplicates(collector.engine) == 0
    finally:
        close_readers(readers)


RQ_SCRIPT = """
import json, sys
import redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry, ScheduledJobRegistry
from tests.collector import rq_jobs
client = redis.Redis.from_url(sys.argv[1])
queues = [Queue(name, connection=client) for name in ("mail", "reports")]
for queue in queues:
    for _ in range(3):
        queue.enqueue(rq_jobs.noop)
    for _ in range(2):
        queue.enqueue(rq_jobs.fail)
SimpleWorker(queues, connection=client).work(burst=True)
for queue in queues:
    for _ in range(4):
        queue.enqueue(rq_jobs.noop)
print(json.dumps({q.name: {"waiting": q.count,
                           "active": StartedJobRegistry(queue=q).get_job_count(cleanup=False),
                           "failed": FailedJobRegistry(queue=q).get_job_count(cleanup=False),
                           "completed": FinishedJobRegistry(queue=q).get_job_count(cleanup=False)}
                  for q in queues}))
"""


@pytest.mark.skipif(int(rq.__version__.split(".")[0]) < 3, reason="RQ 2 has no RQ_KEY_PREFIX: its keys spread")
def test_rq_with_a_hash_tag_prefix_runs_and_is_counted_on_a_cluster(cluster, db_url):
    """RQ 3 puts every key under RQ_KEY_PREFIX; with a hash tag (`{rq}`) they share one slot, so RQ runs on
    the master of that slot, and the collector reads RQ there."""
    _flush(cluster)
    owner = _owner(cluster, "{rq}:queues")
    env = {**os.environ, "RQ_KEY_PREFIX": "{rq}", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", RQ_SCRIPT, f"redis://127.0.0.1:{owner}/0"], cwd=REPO_ROOT,
                         env=env, check=True, timeout=120, capture_output=True, text=True).stdout
    expected = json.loads(out.strip().splitlines()[-1])
    seed = next(port for port in cluster if port != owner)  # any node's URL will do
    collector, readers = _collector([seed], db_url, libraries="rq", rq_key_prefix="{rq}")
    try:
        assert collector.run_cycle().ok
        rows = _latest(collector.engine)
        assert sorted(rows) == ["mail", "reports"]
        for name, counts in expected.items():
            assert {field: rows[name][field] for field in counts} == counts
    finally:
        close_readers(readers)


def test_rq_without_a_hash_tag_cannot_run_on_a_cluster(cluster):
    """With the default prefix RQ's keys spread over slots: through one node's plain client its transactions
    answer MOVED, and an RQ worker refuses redis-py's cluster client (RQ 3.0 needs a connection pool)."""
    _flush(cluster)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    url = f"redis://127.0.0.1:{next(p for p in cluster if p != _owner(cluster, 'rq:queues'))}/0"
    plain = ("import redis, sys\nfrom rq import Queue\nfrom tests.collector import rq_jobs\n"
             "Queue('mail', connection=redis.Redis.from_url(sys.argv[1])).enqueue(rq_jobs.noop)\n")
    worker = ("import redis, sys\nfrom rq import Queue, SimpleWorker\n"
              "c = redis.RedisCluster.from_url(sys.argv[1])\nSimpleWorker([Queue('mail', connection=c)], "
              "connection=c)\n")
    for script, refusal in ((plain, "MovedError"), (worker, "connection_pool")):
        done = subprocess.run([sys.executable, "-c", script, url], cwd=REPO_ROOT, env=env, timeout=60,
                              capture_output=True, text=True)
        assert done.returncode != 0 and refusal in done.stderr, done.stderr[-2000:]


def test_a_master_that_stops_is_an_outage_of_the_configured_url(tmp_path, db_url):
    servers = start_cluster(tmp_path / "own")
    try:
        ports = servers.ports
        _bullmq(ports, [{"queue": name, "prefix": "bull", "waiting": 1} for name in _tagged_queues(ports, 1)])
        collector, readers = _collector(ports, db_url, libraries="bullmq")
        try:
            assert collector.run_cycle().ok
            servers.procs[2].terminate()
            servers.procs[2].wait(timeout=10)
            failed = collector.run_cycle()
            assert not failed.ok and failed.error.startswith(REDIS_OUTAGE_PREFIX)
            assert collector.redis_failures == {f"redis://127.0.0.1:{ports[0]}/0": 1}  # the URL, not the node
        finally:
            close_readers(readers)
    finally:
        servers.stop()


def test_a_cluster_unreachable_at_start_is_recognised_on_its_first_cycle(tmp_path, db_url):
    port = cluster_port()
    collector, readers = _collector([port], db_url, libraries="bullmq")  # nothing listens yet
    try:
        assert [type(reader) for reader in readers] == [DetectingReader]
        assert not collector.run_cycle().ok
        servers = start_cluster(tmp_path / "late", first_port=port)
        try:
            expected = _bullmq(servers.ports, [{"queue": name, "prefix": "bull", "waiting": 2, "delayed": 1}
                                               for name in _tagged_queues(servers.ports, 1)])
            assert collector.run_cycle().ok
            assert isinstance(readers[0].reader, ClusterReader)
            _assert_counts(_latest(collector.engine), expected)
        finally:
            servers.stop()
    finally:
        close_readers(readers)


def test_a_running_worker_is_listed_once_by_the_master_of_its_queue(cluster, db_url):
    _flush(cluster)
    names = _tagged_queues(cluster, per_master=1)
    nodes = json.dumps([{"host": "127.0.0.1", "port": port} for port in cluster])
    plan = json.dumps([{"queue": name, "prefix": "bull", "waiting": 1, "hold": True} for name in names])
    workers = subprocess.Popen(["node", str(NODE_DIR / "cluster.js"), nodes, plan], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert workers.stdout.readline().startswith("{")  # every worker is ready
        collector, readers = _collector(cluster, db_url, libraries="bullmq")
        try:
            wait_for(lambda: collector.run_cycle().worker_count == len(names), "workers listed")
            for _ in range(5):  # the workers' clients also name connections to other masters: never counted
                time.sleep(0.5)
                assert collector.run_cycle().worker_count == len(names)
            listed = [reading for reader in readers[0].readers.values()
                      for reading in reader.discovery.workers(reader.discovery.discover(), 0.0)]
            assert sorted(worker.queues[0] for worker in listed) == sorted(names)
        finally:
            close_readers(readers)
    finally:
        workers.stdin.close()
        workers.wait(timeout=30)
