"""Agent reports read by the collector: worker matching, recycle flags, round trips, Redis errors, imports."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from rq import Queue

from collector.agents import AgentIndex, agent_memory, read_agents, with_agents
from core.health import Thresholds, ThresholdSet
from collector.memory import process_memory
from core.model import WorkerReading
from collector.roundtrips import CountingRedis
from queuewatch_agent import Agent, AgentConfig, AgentReport, index_key, report_key
from queuewatch_agent.report import INDEX_GRACE_S
from tests.agent.agent_helpers import (
    BIN,
    JOBS_MODULE,
    agent_env,
    collector,
    latest_row,
    write_module,
)
from tests.conftest import REPO_ROOT, free_port


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


def test_a_starting_bullmq_worker_without_connections_is_not_listed_twice():
    def report(worker_id: str, started_at_s: float, reported_at_s: float) -> AgentReport:
        return AgentReport(library="bullmq", worker_id=worker_id, queues=("q",), pid=7, hostname="h",
                           started_at_s=started_at_s, reported_at_s=reported_at_s, period_s=5.0, ttl_s=15.0)

    starting, unmatched = report("q:starting", 100.0, 105.0), report("q:no-client-list", 100.0, 200.0)
    index = AgentIndex(live={r.identity: r for r in (starting, unmatched)}, vanished=frozenset())
    names = [worker.name for worker, _ in with_agents([], index)]
    assert names == ["q:no-client-list"]  # past the grace period it gets a row of its own


def _recycle_row(redis_url: str, db_url: str, engine, agent: Agent, limits: ThresholdSet) -> tuple[bool, str]:
    assert agent.publish()
    watcher = collector(redis_url, db_url, engine=engine,
                        thresholds=Thresholds(default=ThresholdSet(), per_queue={"jobs-q": limits}))
    assert watcher.run_cycle().ok
    row = latest_row(engine, "recycle-me")
    assert row["memory_source"] == "agent"
    return row["should_recycle"], row["recycle_reason"]


def test_recycle_flags_at_the_thresholds_from_agent_figures(redis_url, redis_client, db_url, engine):
    agent = Agent("rq", "recycle-me", ["jobs-q"], config=AgentConfig(period_s=60.0), client=redis_client)
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
