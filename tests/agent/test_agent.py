"""The worker memory agent with real RQ, Celery and BullMQ workers, a real redis-server and the collector."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq import Queue
from sqlalchemy import select

from collector.agents import AgentIndex, agent_memory, read_agent_index, read_agents, with_agents
from collector.health import Thresholds, ThresholdSet
from collector.loop import Collector
from collector.memory import process_memory
from collector.model import WorkerReading
from collector.roundtrips import CountingRedis
from collector.rq_reader import RQReader
from queuewatch.settings import load_settings
from queuewatch_agent import Agent, AgentConfig, AgentReport, index_key, report_key
from queuewatch_agent.report import INDEX_GRACE_S
from storage.schema import worker_snapshots
from tests.conftest import REPO_ROOT, free_port

BIN = Path(sys.executable).parent
PERIOD_S = 0.3
COLLECTOR_HOST = "collector-host"
JOBS_MODULE = '''
"""Jobs for the agent tests."""
HELD = []


def hold_mb(mb):
    """Allocate `mb` MB of touched memory and keep it (an in-process leak)."""
    HELD.append(b"\\x01" * (mb * 1024 * 1024))


def noop():
    """Do nothing."""
'''
CELERY_APP = '''
import os

from celery import Celery

import queuewatch_agent.celery  # noqa: F401  (the one line that enables the agent)

app = Celery("qw_celery_app", broker=os.environ["QW_TEST_REDIS_URL"])


@app.task
def add(x, y):
    return x + y


@app.task
def boom():
    raise ValueError("boom")
'''
BULLMQ_WORKER = '''
import asyncio
import os
import signal

from bullmq import Worker

from queuewatch_agent.bullmq import monitored


async def process(job, token):
    if job.data.get("fail"):
        raise ValueError("boom")
    return job.data.get("n")


async def main():
    worker = monitored(Worker("agentq", process, {"connection": os.environ["QW_TEST_REDIS_URL"]}))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await worker.close()


asyncio.run(main())
'''


def wait_for(predicate: Callable[[], object], timeout_s: float = 15.0, what: str = "condition") -> object:
    """Poll until `predicate` returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def agent_env(redis_url: str, module_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(module_dir), str(REPO_ROOT)]),
            "QUEUEWATCH_AGENT_PERIOD_S": str(PERIOD_S), "QW_TEST_REDIS_URL": redis_url, **extra}


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def report_of(client: redis.Redis, library: str, worker_id: str) -> AgentReport | None:
    return AgentReport.from_json(client.get(report_key(library, worker_id)))


def rq_worker(redis_url: str, tmp_path: Path, worker_class: str, name: str, **env: str) -> subprocess.Popen:
    write_module(tmp_path, "qw_agent_jobs", JOBS_MODULE)
    command = [str(BIN / "rq"), "worker", "--url", redis_url, "--worker-class", worker_class, "--name", name,
               "agentq"]
    return start(command, agent_env(redis_url, tmp_path, **env), tmp_path)


def collector(redis_url: str, db_url: str, *, agents: bool = True, thresholds: Thresholds | None = None,
              engine=None) -> Collector:
    from storage.engine import make_engine

    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, thresholds=thresholds)
    reader = RQReader(redis.Redis.from_url(redis_url), settle_s=0, hostname=COLLECTOR_HOST)
    return Collector(settings, engine or make_engine(db_url), reader, hostname=COLLECTOR_HOST,
                     agents_client=redis.Redis.from_url(redis_url) if agents else None)


def latest_row(engine, worker_name: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(worker_snapshots).where(worker_snapshots.c.worker_name == worker_name)
                           .order_by(worker_snapshots.c.id.desc()).limit(1)).mappings().first()
    assert row is not None, f"no row for {worker_name}"
    return dict(row)


def test_rq_worker_on_another_host_shows_agent_memory_that_rises_with_a_job(redis_url, redis_client, db_url,
                                                                          tmp_path):
    worker = rq_worker(redis_url, tmp_path, "queuewatch_agent.rq.MonitoredSimpleWorker", "simple-1",
                       QUEUEWATCH_AGENT_HOSTNAME="other-host")
    try:
        first = wait_for(lambda: report_of(redis_client, "rq", "simple-1"), what="the RQ agent's report")
        assert first.hostname == "other-host" and first.pid == worker.pid and first.queues == ("agentq",)
        assert 0 < redis_client.pttl(report_key("rq", "simple-1")) <= PERIOD_S * 3 * 1000

        blind = collector(redis_url, db_url, agents=False)
        assert blind.run_cycle().ok
        row = latest_row(blind.engine, "simple-1")
        assert row["alive"] and row["memory_source"] is None and row["rss_mb"] is None  # unknown, not zero

        seeing = collector(redis_url, db_url, engine=blind.engine)
        assert seeing.run_cycle().ok
        row = latest_row(seeing.engine, "simple-1")
        assert row["memory_source"] == "agent" and row["alive"]
        assert row["rss_mb"] == pytest.approx(report_of(redis_client, "rq", "simple-1").rss_mb, rel=0.2)
        assert row["memory_percentage"] == pytest.approx(row["rss_mb"] / 1024 * 100)
        before_mb = row["rss_mb"]

        job = Queue("agentq", connection=redis_client).enqueue("qw_agent_jobs.hold_mb", 160)
        wait_for(lambda: job.get_status(refresh=True) == "finished", what="the allocating job")
        grown = wait_for(lambda: (r := report_of(redis_client, "rq", "simple-1")) and r.jobs_processed == 1
                         and r.rss_mb > before_mb + 120 and r, what="the RSS rise in the report")
        assert grown.state in ("idle", "busy") and grown.failed_jobs == 0
        assert seeing.run_cycle().ok
        row = latest_row(seeing.engine, "simple-1")
        assert row["memory_source"] == "agent" and row["rss_mb"] > before_mb + 120
        assert row["jobs_processed"] == 1  # the registry's count
    finally:
        stop(worker)
    assert report_of(redis_client, "rq", "simple-1") is None  # a clean shutdown removes the report
    assert redis_client.zscore(index_key(), report_key("rq", "simple-1")) is None


def test_killed_rq_worker_expires_and_is_then_not_live(redis_url, redis_client, db_url, tmp_path):
    worker = rq_worker(redis_url, tmp_path, "queuewatch_agent.rq.MonitoredWorker", "fork-1",
                       QUEUEWATCH_AGENT_HOSTNAME="other-host")
    try:
        wait_for(lambda: report_of(redis_client, "rq", "fork-1"), what="the RQ agent's report")
        queue = Queue("agentq", connection=redis_client)
        queue.enqueue("qw_agent_jobs.noop")
        queue.enqueue("qw_agent_jobs.missing_function")
        wait_for(lambda: (r := report_of(redis_client, "rq", "fork-1")) and r.jobs_processed == 2,
                 what="two jobs counted through the work horse")
        assert report_of(redis_client, "rq", "fork-1").failed_jobs == 1
        watcher = collector(redis_url, db_url)
        assert watcher.run_cycle().ok
        row = latest_row(watcher.engine, "fork-1")
        assert row["alive"] and row["memory_source"] == "agent"

        worker.kill()
        worker.wait()
        key = report_key("rq", "fork-1")
        assert redis_client.pttl(key) <= PERIOD_S * 3 * 1000
        wait_for(lambda: not redis_client.exists(key), timeout_s=PERIOD_S * 3 + 2, what="the report expiry")
        assert ("rq", "fork-1") not in read_agents(redis_client, time.time())
        assert ("rq", "fork-1") in read_agent_index(redis_client, time.time()).vanished
        assert redis_client.exists("rq:worker:fork-1")  # RQ's own registry still holds it
        assert watcher.run_cycle().ok
        row = latest_row(watcher.engine, "fork-1")
        assert not row["alive"] and row["state"] == "stale" and row["memory_source"] is None
    finally:
        stop(worker)


def test_celery_prefork_reports_main_process_and_each_child(redis_url, redis_client, tmp_path):
    write_module(tmp_path, "qw_celery_app", CELERY_APP)
    command = [str(BIN / "celery"), "-A", "qw_celery_app", "worker", "--pool", "prefork",
               "--concurrency", "1", "-Q", "agentq", "-n", "alpha@%h", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "--loglevel", "WARNING"]
    worker = start(command, agent_env(redis_url, tmp_path), tmp_path)
    try:
        def reports() -> dict[str, AgentReport]:
            return {r.role: r for (library, _), r in read_agents(redis_client, time.time()).items()
                    if library == "celery"}

        found = wait_for(lambda: len(reports()) == 2 and reports(), timeout_s=30, what="main and child")
        main, child = found["main"], found["child"]
        assert main.worker_id.startswith("alpha@") and main.pid == worker.pid and main.queues == ("agentq",)
        assert child.worker_id == f"{main.worker_id}/{child.pid}" and child.parent_id == main.worker_id

        from celery import Celery

        sender = Celery(broker=redis_url)
        for name, args in (("add", (1, 2)), ("boom", ()), ("add", (3, 4))):
            sender.send_task(f"qw_celery_app.{name}", args=args, queue="agentq")
        counted = wait_for(lambda: (r := reports()).keys() == {"main", "child"} and r
                           and r["child"].jobs_processed == r["main"].jobs_processed == 3 and r,
                           timeout_s=20, what="three tasks counted")
        assert counted["child"].failed_jobs == 1  # the main process counts what it accepted for its children
        assert counted["child"].rss_mb > 0 and counted["main"].rss_mb > 0
        counting = CountingRedis.from_url(redis_url)
        assert len(read_agents(counting, time.time())) == 2 and counting.round_trips == 2
    finally:
        stop(worker)
    wait_for(lambda: not any(lib == "celery" for lib, _ in read_agents(redis_client, time.time())),
             what="Celery reports removed on shutdown")


def test_bullmq_worker_reports_and_becomes_a_worker_row(redis_url, redis_client, db_url, tmp_path):
    from bullmq import Queue as BullQueue

    write_module(tmp_path, "qw_bullmq_worker", BULLMQ_WORKER)
    worker = start([sys.executable, "qw_bullmq_worker.py"], agent_env(redis_url, tmp_path), tmp_path)
    try:
        def report() -> AgentReport | None:
            found = [r for (lib, _), r in read_agents(redis_client, time.time()).items() if lib == "bullmq"]
            return found[0] if found else None

        first = wait_for(report, what="the BullMQ agent's report")
        assert first.worker_id.startswith("agentq:") and first.pid == worker.pid

        async def add_jobs() -> None:
            queue = BullQueue("agentq", {"connection": redis_url})
            await queue.add("ok", {"n": 1})
            await queue.add("bad", {"fail": True})
            await queue.close()

        asyncio.run(add_jobs())
        counted = wait_for(lambda: (r := report()) and r.jobs_processed == 2 and r, what="two BullMQ jobs")
        assert counted.failed_jobs == 1
        names = {int(c["id"]): c["name"] for c in redis_client.client_list()}
        assert len(counted.client_ids) == 2
        assert all(names[i].startswith("bull:agentq") for i in counted.client_ids)
        watcher = collector(redis_url, db_url)
        assert watcher.run_cycle().ok
        row = latest_row(watcher.engine, first.worker_id)
        assert row["library"] == "bullmq" and row["memory_source"] == "agent" and row["alive"]
        assert row["queues"] == "agentq" and row["jobs_processed"] == 2 and row["failed_jobs"] == 1
        assert row["hostname"] == first.hostname and row["rss_mb"] > 0
    finally:
        stop(worker)
    wait_for(lambda: report() is None, what="the BullMQ report removed on close")


def test_reports_match_workers_by_name_or_connection_and_expired_ones_are_stale():
    def reading(name: str, library: str, alive: bool = True) -> WorkerReading:
        return WorkerReading(name=name, library=library, queues=["q"], pid=None, hostname="h", state="idle",
                             alive=alive, successful_jobs=3, failed_jobs=0, birth_at_s=1.0,
                             last_heartbeat_at_s=2.0)

    def report(library: str, worker_id: str, client_ids: tuple[int, ...] = ()) -> AgentReport:
        return AgentReport(library=library, worker_id=worker_id, queues=("q",), pid=7, hostname="far",
                           started_at_s=1.0, reported_at_s=2.0, period_s=1.0, ttl_s=3.0, jobs_processed=4,
                           failed_jobs=1, rss_mb=100.0, heap_used_mb=90.0, heap_total_mb=95.0,
                           external_mb=10.0, array_buffers_mb=0.0, client_ids=client_ids)

    live = [report("rq", "a"), report("bullmq", "q:1a2b3c4d", (41, 42)), report("celery", "n@h/9")]
    index = AgentIndex(live={r.identity: r for r in live}, vanished=frozenset({("rq", "b")}))
    workers = [reading("a", "rq"), reading("b", "rq"), reading("q#41", "bullmq"), reading("q#77", "bullmq"),
               reading("a", "celery")]
    paired = {(w.library, w.name): (w, r) for w, r in with_agents(workers, index)}
    assert paired[("rq", "a")][1] is live[0] and paired[("bullmq", "q#41")][1] is live[1]
    bull_worker = paired[("bullmq", "q#41")][0]
    assert bull_worker.jobs_processed == 4 and bull_worker.failed_jobs == 1
    assert paired[("bullmq", "q#77")][1] is None and paired[("celery", "a")][1] is None
    stale, _ = paired[("rq", "b")]
    assert not stale.alive and stale.state == "stale"
    child, child_report = paired[("celery", "n@h/9")]  # agent-only: a row of its own
    assert child_report is live[2] and child.alive and child.hostname == "far" and child.jobs_processed == 4
    assert (child.successful_jobs, child.failed_jobs, child.birth_at_s) == (3, 1, 1.0)
    assert ("bullmq", "q:1a2b3c4d") not in paired  # matched to the reader's worker, not repeated
    assert agent_memory(live[0], 200.0)["memory_percentage"] == pytest.approx(50.0)
    assert agent_memory(AgentReport.from_json('{"library": "rq", "worker_id": "x", "queues": [], "pid": 1, '
                                              '"hostname": "h", "started_at_s": 0, "reported_at_s": 0, '
                                              '"period_s": 1, "ttl_s": 3}'), 200.0) is None


def _recycle_row(redis_url: str, db_url: str, engine, agent: Agent, limits: ThresholdSet) -> tuple[bool, str]:
    assert agent.publish()
    watcher = collector(redis_url, db_url, engine=engine,
                        thresholds=Thresholds(default=ThresholdSet(), per_queue={"jobs-q": limits}))
    assert watcher.run_cycle().ok
    row = latest_row(engine, "recycle-me")
    assert row["memory_source"] == "agent"
    return row["should_recycle"], row["recycle_reason"]


def test_recycle_flags_at_the_thresholds_from_agent_figures(redis_url, redis_client, db_url, engine):
    agent = Agent("bullmq", "recycle-me", ["jobs-q"], config=AgentConfig(period_s=60.0), client=redis_client)
    rss_mb = agent.report().rss_mb
    roomy = ThresholdSet(recycle_after_jobs=5, recycle_after_uptime_s=3600, memory_hard_limit_mb=rss_mb + 500)
    for _ in range(4):
        agent.record_job()
    assert _recycle_row(redis_url, db_url, engine, agent, roomy) == (False, None)
    agent.record_job(failed=True)
    assert _recycle_row(redis_url, db_url, engine, agent, roomy) == (True, "Job limit reached: 5 jobs >= 5")

    many_jobs = ThresholdSet(recycle_after_jobs=1000, memory_hard_limit_mb=rss_mb + 500)
    agent.started_at_s = time.time() - 4 * 3600 + 30
    assert _recycle_row(redis_url, db_url, engine, agent, many_jobs) == (False, None)
    agent.started_at_s = time.time() - 4 * 3600 - 30
    assert _recycle_row(redis_url, db_url, engine, agent, many_jobs) == (True,
                                                                         "Uptime limit reached: 4.0h >= 4h")

    agent.started_at_s = time.time()
    tight = ThresholdSet(recycle_after_jobs=1000, memory_soft_limit_mb=1, memory_hard_limit_mb=rss_mb / 2)
    flagged, reason = _recycle_row(redis_url, db_url, engine, agent, tight)
    assert flagged and reason.startswith("Critical memory limit exceeded: ") and reason.endswith(
        f"MB > {rss_mb / 2:.0f}MB")


def test_reads_take_two_round_trips_and_agents_trim_the_index(redis_client, redis_url):
    config = AgentConfig(period_s=60.0, prefix="qa")
    agents = [Agent("bullmq", f"w{i}", ["q"], config=config, client=redis_client) for i in range(3)]
    redis_client.zadd(index_key("qa"), {report_key("rq", "long-gone", "qa"): time.time() - INDEX_GRACE_S - 5})
    for agent in agents:
        assert agent.publish()
    assert redis_client.zcard(index_key("qa")) == 3  # the entry that expired long ago was trimmed
    counting = CountingRedis.from_url(redis_url)
    found = read_agents(counting, time.time(), prefix="qa")
    assert sorted(found) == [("bullmq", "w0"), ("bullmq", "w1"), ("bullmq", "w2")]
    assert counting.round_trips == 2
    assert read_agents(redis_client, time.time()) == {}  # another prefix sees nothing
    empty = CountingRedis.from_url(redis_url)
    assert read_agents(empty, time.time()) == {} and empty.round_trips == 1
    agents[0].remove()
    assert sorted(read_agents(redis_client, time.time(), prefix="qa")) == [("bullmq", "w1"), ("bullmq", "w2")]


def test_redis_errors_never_reach_the_worker_and_are_logged_once_a_minute(redis_url, redis_client, tmp_path,
                                                                           caplog):
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    agent = Agent("rq", "cut-off", ["q"], config=AgentConfig(redis_url=dead_url, period_s=60.0))
    with caplog.at_level(logging.WARNING, logger="queuewatch_agent"):
        assert [agent.publish() for _ in range(3)] == [False, False, False]
        assert agent.remove() is False
    assert len([r for r in caplog.records if r.name == "queuewatch_agent"]) == 1

    write_module(tmp_path, "qw_agent_jobs", JOBS_MODULE)
    job = Queue("agentq", connection=redis_client).enqueue("qw_agent_jobs.noop")
    subprocess.run([str(BIN / "rq"), "worker", "--burst", "--url", redis_url, "--worker-class",
                    "queuewatch_agent.rq.MonitoredWorker", "agentq"], cwd=tmp_path, check=True, timeout=60,
                   env=agent_env(redis_url, tmp_path, QUEUEWATCH_AGENT_REDIS_URL=dead_url),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert job.get_status(refresh=True) == "finished"


def test_agent_imports_standalone_and_shares_the_memory_definition():
    code = ("import sys, queuewatch_agent, queuewatch_agent.agent; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'collector', 'storage', 'queuewatch', 'api', 'sqlalchemy', 'pandas', 'rq', 'celery', "
            "'bullmq'}); "
            "print(','.join(bad))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    mine = process_memory(os.getpid(), 1024.0)
    report = Agent("rq", "me", [], config=AgentConfig(redis_url="redis://127.0.0.1:1/0")).report()
    assert set(mine) == {"rss_mb", "heap_used_mb", "heap_total_mb", "external_mb", "array_buffers_mb",
                         "memory_percentage"}
    assert report.rss_mb == pytest.approx(mine["rss_mb"], rel=0.1) and report.array_buffers_mb == 0.0
    assert AgentReport.from_json(report.to_json()) == report
    assert AgentReport.from_json(b"not json") is None and AgentReport.from_json('{"library": ""}') is None
