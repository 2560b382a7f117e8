"""The worker memory agent with real RQ, Celery and BullMQ workers, a real redis-server and the collector."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq import Queue

from collector.agents import read_agent_index, read_agents
from collector.roundtrips import CountingRedis
from queuewatch_agent import AgentReport, index_key, report_key
from tests.agent.agent_helpers import (
    BIN,
    JOBS_MODULE,
    PERIOD_S,
    agent_env,
    collector,
    latest_row,
    write_module,
)

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
