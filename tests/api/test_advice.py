"""The capacity and timeout advice extension, end to end: real RQ workers, a real collector, a real API server."""
from __future__ import annotations

import math

import httpx
import pytest
import redis
from rq import Queue
from sqlalchemy import select

from collector.loop import Collector
from collector.rq_reader import RQReader
from accounts.accounts import add_user, issue_token
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import queue_samples, series
from tests.api.conftest import API, start_api
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import run_burst_worker

RUN_S = 0.1
FINISHED, LEFT_WAITING = 20, 10


def erlang_c_by_factorials(c: int, a: float) -> float:
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


def workers_by_hand(arrival_per_s: float, run_s: float, target_s: float) -> int:
    """The smallest c with Erlang C · exp(−(c − a)·T/S) ≤ 5 % (the README's formula, written out again)."""
    load = arrival_per_s * run_s
    c = math.floor(load) + 1
    while erlang_c_by_factorials(c, load) * math.exp(-(c - load) * target_s / run_s) > 0.05:
        c += 1
    return c


@pytest.fixture
def advice_site(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    db_url = f"sqlite:///{tmp_path / 'queuewatch.db'}"
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url)
    collector = Collector(settings, make_engine(db_url), RQReader(client, settle_s=0))
    queue = Queue("capacity", connection=client)
    queue.enqueue(rq_jobs.sleep_for, RUN_S, job_timeout=30)
    assert collector.run_cycle().ok  # the window starts here with one job waiting
    for _ in range(FINISHED - 1):
        queue.enqueue(rq_jobs.sleep_for, RUN_S, job_timeout=30)
    run_burst_worker(redis_url, "capacity")
    for _ in range(LEFT_WAITING):
        queue.enqueue(rq_jobs.noop)
    assert collector.run_cycle().ok
    engine = make_engine(db_url)
    add_user(engine, "admin@example.com", "ADMIN", "correct horse")
    token, _ = issue_token(engine, "admin@example.com")
    proc, url = start_api(db_url, redis_url, env={"QUEUEWATCH_WAIT_TARGET_S": "0.05",
                                                  "QUEUEWATCH_METRICS_ACCESS": "public"})
    yield url, {"Authorization": f"Bearer {token}"}, engine
    proc.terminate()
    proc.wait(timeout=10)


def test_capacity_figures_follow_the_arithmetic(advice_site):
    url, headers, engine = advice_site
    with engine.connect() as conn:
        times_ms = [t for (t,) in conn.execute(
            select(queue_samples.c.sampled_at_ms).join(series, series.c.id == queue_samples.c.series_id)
            .where(series.c.queue_name == "capacity").order_by(queue_samples.c.sampled_at_ms))]
    assert len(times_ms) == 2
    window_s = (times_ms[1] - times_ms[0]) / 1000.0

    body = httpx.get(f"{url}{API}/queues/capacity/advice", headers=headers, timeout=10).json()
    capacity = body["capacity"]
    assert body["library"] == "rq" and capacity["windowSeconds"] == pytest.approx(window_s)
    arrival = (FINISHED + LEFT_WAITING - 1) / window_s  # ended + backlog growth (1 -> 10)
    assert capacity["arrivalPerSecond"] == pytest.approx(arrival)
    assert capacity["completionPerSecond"] == pytest.approx(FINISHED / window_s)
    assert capacity["meanRunSeconds"] == pytest.approx(RUN_S, rel=0.5)  # a sleep of 0.1 s, measured
    run_s = capacity["meanRunSeconds"]
    assert capacity["offeredLoad"] == pytest.approx(arrival * run_s)
    assert capacity["waitTargetSeconds"] == 0.05
    assert capacity["workersNeeded"] == workers_by_hand(arrival, run_s, 0.05)
    assert capacity["backlog"] == LEFT_WAITING and capacity["growing"] and capacity["drain"] == "growing"
    assert capacity["drainSeconds"] is None

    timeout = body["timeout"]
    assert timeout["configuredSeconds"] == 30.0 and timeout["sampleCount"] == FINISHED
    assert timeout["maxSeconds"] == pytest.approx(RUN_S, rel=0.5)
    assert timeout["verdict"] == "far_above_run_times"  # 30 s > 10 × ~0.1 s
    assert timeout["p999Seconds"] * 1.5 <= timeout["suggestedSeconds"] <= timeout["p999Seconds"] * 1.5 * 2.5

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    needed = f'queuewatch_queue_workers_needed{{library="rq",queue="capacity"}} {float(capacity["workersNeeded"])}'
    assert needed in metrics
    assert 'queuewatch_queue_backlog_growing{library="rq",queue="capacity"} 1.0' in metrics
    assert 'queuewatch_queue_drain_seconds{library="rq",queue="capacity"}' not in metrics  # growing: absent

    missing = httpx.get(f"{url}{API}/queues/nope/advice", headers=headers, timeout=10)
    assert missing.status_code == 400 and missing.json()["code"] == "INVALID_QUEUE_NAME"
    assert httpx.get(f"{url}{API}/queues/capacity/advice", timeout=10).status_code == 401
