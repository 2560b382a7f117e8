"""Failed jobs and the job lookup in real Chromium, over a real collector fed by real RQ and BullMQ workers."""
from __future__ import annotations

import pytest
import redis
from rq import Queue

from accounts.accounts import add_user
from collector.bullmq_reader import BullMQReader
from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage.engine import make_engine
from storage.queries_capacity import queue_advice
from tests.collector import bullmq_helpers, rq_jobs
from tests.collector.test_rq_reader import run_burst_worker
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, SCREENSHOTS, USER, _log_in, \
    _no_exception, _pick_queue, dashboard_server

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")]
MESSAGE = "known failure 42"


@pytest.fixture
def collected(redis_url, tmp_path):
    """A database filled by a real collector: one RQ and one BullMQ job that raised ValueError(MESSAGE)."""
    client = redis.Redis.from_url(redis_url)
    db_url = f"sqlite:///{tmp_path / 'queuewatch.db'}"
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url)
    collector = Collector(settings, make_engine(db_url), [RQReader(client, settle_s=0), BullMQReader(client)])
    assert collector.run_cycle().ok
    queue = Queue("billing", connection=client)
    failing = queue.enqueue(rq_jobs.fail, MESSAGE)
    finished = queue.enqueue(rq_jobs.sleep_for, 0.05)
    run_burst_worker(redis_url, "billing")
    [bull_id] = bullmq_helpers.add_jobs(redis_url, "mail", [({"fail": MESSAGE}, {})])
    bullmq_helpers.run_worker(redis_url, "mail")
    for _ in range(2):
        assert collector.run_cycle().ok
    for _ in range(5):  # a backlog that grows with no worker: arrivals above completions
        queue.enqueue(rq_jobs.sleep_for, 0.05)
    assert collector.run_cycle().ok
    add_user(collector.engine, USER, "ADMIN", PASSWORD)
    return db_url, redis_url, failing.id, finished.id, bull_id


def test_failures_on_queue_detail_and_the_job_lookup(collected, tmp_path):
    db_url, redis_url, failed_id, finished_id, bull_id = collected
    from playwright.sync_api import sync_playwright

    log = tmp_path / "streamlit.log"
    env = {"QUEUEWATCH_DB_URL": db_url, "QUEUEWATCH_REDIS_URL": redis_url}
    before = {key: redis.Redis.from_url(redis_url).dump(key) for key in redis.Redis.from_url(redis_url).keys("*")}
    with dashboard_server(db_url, log, env) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1440, "height": 2600}).new_page()
        try:
            _log_in(page, url, USER)
            page.get_by_role("heading", name="Queue overview").wait_for(timeout=30_000)
            page.get_by_role("link", name="Queue detail").click()
            page.get_by_role("heading", name="Queue detail").wait_for(timeout=30_000)
            _pick_queue(page, "billing · rq")
            page.get_by_role("heading", name="Failed jobs").wait_for(timeout=30_000)
            page.get_by_text("Read-only: queuewatch never retries, requeues or deletes jobs.").first.wait_for(
                timeout=30_000)
            page.get_by_text(f"ValueError: {MESSAGE}").first.wait_for(timeout=30_000)  # the traceback shown
            page.get_by_text("Traceback (most recent call last)").first.wait_for(timeout=30_000)  # just after
            page.get_by_role("heading", name="Capacity and timeout advice").wait_for(timeout=30_000)
            capacity = queue_advice(make_engine(db_url), "billing", library="rq", wait_target_s=60.0)["capacity"]
            assert capacity["growing"] and capacity["workers_needed"] >= 1, capacity
            needed = f"{capacity['workers_needed']:,}"
            tiles = page.get_by_test_id("stMetric")
            assert tiles.filter(has_text="Workers needed").first.inner_text().splitlines()[-1].strip() == needed
            assert capacity["drain_text"] in tiles.filter(has_text="Backlog").first.inner_text()
            _no_exception(page)
            page.screenshot(path=str(SCREENSHOTS / "queuewatch-queue-detail-failures.png"), full_page=True)

            page.get_by_role("link", name="Job lookup").click()
            page.get_by_role("heading", name="Job lookup").wait_for(timeout=30_000)
            box = page.get_by_label("Job id")
            box.fill(failed_id)
            box.press("Enter")
            page.get_by_text(f"ValueError: {MESSAGE}").first.wait_for(timeout=30_000)
            _no_exception(page)
            page.screenshot(path=str(SCREENSHOTS / "queuewatch-job-lookup.png"), full_page=True)
            box.fill(bull_id)
            box.press("Enter")
            page.get_by_text(MESSAGE, exact=True).wait_for(timeout=30_000)  # BullMQ's failedReason, alone
            page.get_by_text("Failure message").wait_for(timeout=30_000)
            box.fill("no-such-job-anywhere")
            box.press("Enter")
            page.get_by_text("was not found in any configured Redis").wait_for(timeout=30_000)
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "queuewatch-jobs-failure.png"), full_page=True)
            print("page text:", page.inner_text("body")[:3000])
            print("streamlit log:", log.read_text()[-3000:])
            raise
        finally:
            browser.close()
    client = redis.Redis.from_url(redis_url)
    assert {key: client.dump(key) for key in client.keys("*")} == before  # the pages wrote nothing to Redis
