"""The least-privilege ACL user of the README: a real collect cycle over real RQ, BullMQ and Celery queues gets
every figure with it, and a write to a queue key is refused (NOPERM)."""
from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import func, select

from collector.connections import READ_ONLY_ACL
from collector.loop import Collector
from collector.readers import build_readers, close_readers
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import queue_snapshots
from tests.collector.bullmq_helpers import add_jobs, on_queue, run_worker
from tests.collector.celery_app import make_app
from tests.collector.celery_helpers import start_worker  # noqa: F401 - fixture
from tests.collector.rq_fill import fill_rq, rq_counts, stored_counts
from tests.conftest import REPO_ROOT

USER, PASSWORD = "queuewatch", "collector-secret"


@pytest.fixture
def acl_url(redis_url, redis_client):
    """The session Redis, with the read-only collector user of the README."""
    redis_client.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *READ_ONLY_ACL.split())
    redis_client.execute_command("ACL", "LOG", "RESET")
    host_port = redis_url.split("://", 1)[1]
    yield f"redis://{USER}:{PASSWORD}@{host_port}"
    redis_client.execute_command("ACL", "DELUSER", USER)


def _latest(engine) -> dict[tuple[str, str], dict]:
    t = queue_snapshots
    last = select(func.max(t.c.cycle_id)).scalar_subquery()
    with engine.connect() as conn:
        return {(row["library"], row["queue_name"]): dict(row)
                for row in conn.execute(select(t).where(t.c.cycle_id == last)).mappings()}


def test_the_read_only_user_collects_every_library_and_cannot_write(acl_url, redis_url, redis_client, db_url,
                                                                    start_worker):  # noqa: F811
    fill_rq(redis_client, "mail")
    add_jobs(redis_url, "thumbs", [({}, {}), ({"fail": "bad"}, {})])
    run_worker(redis_url, "thumbs")
    add_jobs(redis_url, "thumbs", [({}, {}), ({}, {"delay": 3_600_000})])
    bullmq = on_queue(redis_url, "thumbs", "getJobCounts")
    settings = load_settings(env={}, redis_url=acl_url, db_url=db_url, libraries="rq,bullmq,celery",
                             celery_queues="billing")
    readers = build_readers(settings)
    collector = Collector(settings, make_engine(db_url), readers, agents_client=redis.Redis.from_url(acl_url))
    celery = next(reader for reader in readers if reader.library == "celery")
    try:
        assert collector.run_cycle().ok
        assert celery.listener.wait_subscribed(10)  # PSUBSCRIBE to the events is allowed
        start_worker("billing")
        app = make_app(redis_url)
        for _ in range(3):
            app.tasks["qw.sleep_for"].apply_async((0.01,), queue="billing")
        deadline = time.monotonic() + 30
        while True:
            result = collector.run_cycle()
            assert result.ok and result.error is None
            rows = _latest(collector.engine)
            if rows.get(("celery", "billing"), {}).get("finished_delta") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert stored_counts(rows[("rq", "mail")]) == rq_counts(redis_client, "mail")
        thumbs = rows[("bullmq", "thumbs")]
        assert (thumbs["waiting"], thumbs["scheduled"], thumbs["failed"], thumbs["completed"]) == (
            bullmq["waiting"], bullmq["delayed"], bullmq["failed"], bullmq["completed"])
        assert rows[("celery", "billing")]["finished_delta"] >= 1  # events arrived over the subscription
        assert sum(getattr(reader, "problems").reported for reader in readers) == 0
        assert redis_client.execute_command("ACL", "LOG") == []  # nothing the collector sent was refused
    finally:
        close_readers(readers)

    user = redis.Redis.from_url(acl_url)
    for write in (lambda: user.lpush("rq:queue:mail", "forged"), lambda: user.delete("bull:thumbs:wait"),
                  lambda: user.set("queuewatch:anything", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions"):
            write()


def test_the_readme_shows_the_acl_rule():
    assert READ_ONLY_ACL in (REPO_ROOT / "README.md").read_text()
