"""Worker memory of BullMQ queues: a real Python bullmq worker running the queuewatch agent, read by the
collector (BullMQ reader plus agent reports), is the queue's memoryUsageMB and is judged by the memory alert."""
from __future__ import annotations

import time

import pytest
import redis

from collector.agents import read_agents
from collector.bullmq_reader import BullMQReader
from core.health import Thresholds, ThresholdSet
from collector.loop import Collector
from config.settings import load_settings
from storage.engine import make_engine
from storage.queries import current_queue_metrics
from tests.collector.bullmq_helpers import add_jobs, kill, start_worker, wait_until

SOFT_LIMIT_MB = 5.0


@pytest.mark.parametrize(("prefix", "queue_name"), [("bull", "mem"), ("{bull}", "{bull}:mem")])
def test_agent_memory_is_the_queues_memory_and_is_alerted(redis_url, redis_client, db_url, prefix, queue_name):
    add_jobs(redis_url, "mem", [({}, {})], prefix=prefix)
    worker = start_worker(redis_url, "mem", prefix=prefix, agent=True, env={"QUEUEWATCH_AGENT_PERIOD_S": "0.3"})
    try:
        def report():
            found = [r for (library, _), r in read_agents(redis_client, time.time()).items() if library == "bullmq"]
            return found[0] if found and len(found[0].client_ids) == 2 and found[0].rss_mb else None

        wait_until(lambda: report() is not None)
        thresholds = Thresholds(default=ThresholdSet(memory_soft_limit_mb=SOFT_LIMIT_MB))
        settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, thresholds=thresholds)
        reader = BullMQReader(redis.Redis.from_url(redis_url), prefixes=("bull", "{bull}"))
        collector = Collector(settings, make_engine(db_url), reader, agents_client=redis.Redis.from_url(redis_url))
        result = collector.run_cycle()
        rss_mb = report().rss_mb
    finally:
        kill(worker)
    assert result.ok
    metrics = current_queue_metrics(collector.engine, queue_name, library="bullmq")
    assert metrics["memoryUsageMB"] == pytest.approx(rss_mb, rel=0.5) and metrics["memoryUsageMB"] > SOFT_LIMIT_MB
    [alert] = [c for c in result.alert_changes if c.alert_type == "memory_usage"]
    assert (alert.kind, alert.queue_name, alert.severity) == ("opened", queue_name, "warning")
