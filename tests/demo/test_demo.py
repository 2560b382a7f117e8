"""The demo for real but briefly: embedded redis-server, RQ worker subprocesses and the workload producer."""
from __future__ import annotations

import base64
import io
import os
import signal
import threading
import time
import zlib
from pathlib import Path

import psutil
import pytest
import redis

from queuewatch.demo.embedded_redis import EmbeddedRedis, embedded_redis, redis_server_binary
from queuewatch.demo.processes import DemoProcesses
from queuewatch.demo.runner import resolve_db_url, run_demo
from queuewatch.demo.workload import (
    DEMO_WORKERS,
    EMAIL_QUEUE,
    PROFILES,
    QUEUE_NAMES,
    REPORT_QUEUE,
    SCHEDULED_QUEUES,
    Workload,
    WorkloadConfig,
    worker_argv,
)
from config.settings import Settings
from tests.demo.helpers import Output, alive, demo_children_of, running

RUN_S = 20.0
WORKERS_ONLY = {"workers", "workload"}


def _failure_text(client: redis.Redis, job_id: str) -> str:
    """The stored exception of a failed job: RQ 2's result stream, else the job hash."""
    texts = []
    for _, entry in client.xrevrange(f"rq:results:{job_id}", count=1):
        if entry.get(b"exc_string"):
            texts.append(zlib.decompress(base64.b64decode(entry[b"exc_string"])).decode())
    raw = client.hget(f"rq:job:{job_id}", "exc_info")
    if raw:
        texts.append(zlib.decompress(raw).decode(errors="replace"))
    return "\n".join(texts)


def test_embedded_redis_starts_answers_and_stops(tmp_path):
    with EmbeddedRedis(tmp_path / "redis") as server:
        url = server.url
        pid = server.process.pid
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        assert client.ping()
        assert url.startswith("redis://127.0.0.1:")
        assert psutil.pid_exists(pid)
    assert not alive(pid)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_embedded_redis_context_manager_yields_a_url(tmp_path):
    with embedded_redis(tmp_path) as url:
        assert redis.Redis.from_url(url).set("demo", "1")
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    assert Path(redis_server_binary()).name == "redis-server"


def test_workers_and_workload_run_real_jobs_and_leave_nothing_behind(tmp_path):
    before = {proc.pid for proc in psutil.Process().children(recursive=True)}
    seen_pids: set[int] = set()
    peak = {"scheduled": 0, "deferred": 0, "email_waiting": 0}
    config = WorkloadConfig(first_burst_after_s=4.0, burst_size=300)
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        seen_pids.add(server.process.pid)
        with DemoProcesses(tmp_path / "logs") as processes:
            processes.start_workers(server.url)
            processes.start_workload(server.url, config)
            deadline_s = time.monotonic() + RUN_S
            while time.monotonic() < deadline_s:
                seen_pids |= processes.pids()
                peak["scheduled"] = max(peak["scheduled"],
                                        sum(client.zcard(f"rq:scheduled:{q}") for q in SCHEDULED_QUEUES))
                peak["deferred"] = max(peak["deferred"], client.zcard(f"rq:deferred:{REPORT_QUEUE}"))
                peak["email_waiting"] = max(peak["email_waiting"], client.llen(f"rq:queue:{EMAIL_QUEUE}"))
                time.sleep(0.25)
            assert processes.dead() == [], [child.log_tail() for child in processes.dead()]
            workers = {w.decode() for w in client.smembers("rq:workers")}
            assert len(workers) == len(DEMO_WORKERS)

        finished = sum(client.zcard(f"rq:finished:{q}") for q in QUEUE_NAMES)
        failed_ids = [job_id.decode() for q in QUEUE_NAMES
                      for job_id in client.zrange(f"rq:failed:{q}", 0, -1)]
        failures = [_failure_text(client, job_id) for job_id in failed_ids]
        client.close()

    assert finished >= 100
    assert failed_ids, "no job failed"
    assert any("JobTimeoutException" in text for text in failures), failures
    assert any("WebhookDeliveryError" in text for text in failures), failures
    assert peak["scheduled"] >= 1
    assert peak["deferred"] >= 1
    assert peak["email_waiting"] > 200, "the burst did not push the queue past the depth warning"

    leftovers = [pid for pid in seen_pids if alive(pid)]
    assert leftovers == []
    assert {proc.pid for proc in psutil.Process().children(recursive=True) if running(proc)} <= before


def test_run_demo_prints_where_things_are_and_stops_on_ctrl_c(tmp_path):
    out = Output()
    seen: set[int] = set()
    before = {proc.pid for proc in psutil.Process().children(recursive=True)}  # e.g. the session's redis-server

    def press_ctrl_c() -> None:
        if not out.banner.wait(30):
            return
        deadline_s = time.monotonic() + 20
        while time.monotonic() < deadline_s:
            if len(demo_children_of(os.getpid(), "queuewatch.demo.celery_app")) >= 3:
                break
            time.sleep(0.2)
        time.sleep(2)
        seen.update(proc.pid for proc in psutil.Process().children(recursive=True) if proc.pid not in before)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'queuewatch.db'}")
    everything_but_the_ui = WORKERS_ONLY | {"bullmq", "celery"}
    code = run_demo(settings, data_dir=tmp_path, duration_s=60, components=everything_but_the_ui, out=out)

    text = out.getvalue()
    assert code == 0, text
    assert "Redis:      redis://127.0.0.1:" in text
    assert str(tmp_path / "queuewatch.db") in text
    assert "Libraries:  RQ, BullMQ, Celery" in text
    assert "image-resize, search-indexing" in text and "billing, pdf-render" in text
    assert "Press Ctrl-C to stop" in text
    assert "Demo stopped." in text
    assert len(seen) >= len(DEMO_WORKERS) + 2 + 2 + 3 + 1
    assert [pid for pid in seen if alive(pid)] == []
    assert demo_children_of(os.getpid(), "queuewatch.demo") == []
    assert demo_children_of(os.getpid(), "rq.cli") == []
    assert demo_children_of(os.getpid(), str(tmp_path)) == []


def test_run_demo_reports_a_child_that_dies_and_stops_the_rest(tmp_path):
    out = Output()

    def kill_a_worker() -> None:
        if out.banner.wait(30):
            time.sleep(1)
            for proc in demo_children_of(os.getpid(), "demo-mailer-1-"):
                proc.kill()

    threading.Thread(target=kill_a_worker, daemon=True).start()
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'queuewatch.db'}")
    code = run_demo(settings, data_dir=tmp_path, duration_s=30, components=WORKERS_ONLY, out=out)

    text = out.getvalue()
    assert code == 1, text
    assert "worker-mailer-1 exited unexpectedly" in text
    assert demo_children_of(os.getpid(), "rq.cli") == []
    assert demo_children_of(os.getpid(), str(tmp_path)) == []


def test_run_demo_uses_a_given_redis_and_says_when_it_is_unreachable(tmp_path):
    out = io.StringIO()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", db_url=f"sqlite:///{tmp_path / 'q.db'}")
    code = run_demo(settings, redis_url_given=True, data_dir=tmp_path, duration_s=1,
                    components=WORKERS_ONLY, out=out)
    assert code == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in out.getvalue()


def test_run_demo_rejects_unknown_components(tmp_path):
    out = io.StringIO()
    assert run_demo(Settings(), data_dir=tmp_path, components={"workers", "pager"}, out=out) == 2
    assert "unknown component(s) ['pager']" in out.getvalue()


def test_relative_sqlite_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url, location = resolve_db_url("sqlite:///data/queuewatch.db")
    assert location == str(tmp_path / "data" / "queuewatch.db")
    assert url == f"sqlite:///{tmp_path / 'data' / 'queuewatch.db'}"
    assert (tmp_path / "data").is_dir()
    assert resolve_db_url("postgresql://qw:secret@db/qw")[1] == "postgresql://qw:***@db/qw"


def test_worker_command_lines():
    scheduler_workers = [spec for spec in DEMO_WORKERS if spec.with_scheduler]
    assert len(scheduler_workers) == 1
    assert set(SCHEDULED_QUEUES) <= set(scheduler_workers[0].queues)
    assert {q for spec in DEMO_WORKERS for q in spec.queues} == set(QUEUE_NAMES)
    assert any(len(spec.queues) > 1 for spec in DEMO_WORKERS)
    argv = worker_argv(scheduler_workers[0], "redis://127.0.0.1:6390/0", "demo-reports-1-abcd")
    assert argv[1:4] == ["-m", "rq.cli", "worker"]
    assert argv[argv.index("--url") + 1] == "redis://127.0.0.1:6390/0"
    assert argv[argv.index("--name") + 1] == "demo-reports-1-abcd"
    assert "--with-scheduler" in argv
    assert argv[-len(scheduler_workers[0].queues):] == list(scheduler_workers[0].queues)


def test_workload_is_seeded_and_mixes_outcomes_as_profiled():
    connection = redis.Redis()  # never contacted: only job arguments are drawn here

    def draws(seed: int) -> list[tuple[str, float]]:
        workload = Workload(connection, WorkloadConfig(seed=seed))
        return [(outcome, workload._work_ms(profile, outcome))
                for profile in PROFILES for outcome in [workload._outcome(profile) for _ in range(20)]]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    workload = Workload(connection, WorkloadConfig(seed=1))
    webhook = next(p for p in PROFILES if p.name == "webhook")
    outcomes = [workload._outcome(webhook) for _ in range(20_000)]
    assert 14.0 < outcomes.count("error") / 200 < 22.0
    assert 2.5 < outcomes.count("timeout") / 200 < 5.5
    timeout_ms = workload._work_ms(webhook, "timeout")
    assert timeout_ms > webhook.job_timeout_s * 1000
    assert all(workload._work_ms(webhook, "ok") < webhook.job_timeout_s * 1000 for _ in range(1000))


def test_demo_pages_with_the_recommended_alert_timing_unless_given_a_config(monkeypatch, tmp_path):
    from config.settings import load_rules
    from queuewatch import cli

    _, timings = load_rules(cli.DEMO_CONFIG_PATH)
    assert (timings.default.pending_s, timings.default.keep_firing_s, timings.default.min_jobs) == (60, 120, 20)
    seen: list[str | None] = []
    monkeypatch.setattr("queuewatch.demo.runner.run_demo",
                        lambda settings, **kwargs: seen.append(settings.config_path) or 0)
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "QUEUEWATCH_CONFIG"})
    db = f"sqlite:///{tmp_path / 'd.db'}"
    assert cli.main(["demo", "--db", db, "--duration", "1"]) == 0
    own = tmp_path / "own.toml"
    own.write_text("[alerts]\npending_s = 5\n")
    assert cli.main(["demo", "--db", db, "--duration", "1", "--config", str(own)]) == 0
    assert seen == [str(cli.DEMO_CONFIG_PATH), str(own)]
    assert os.environ["QUEUEWATCH_CONFIG"] == str(own)  # what the collector child reads
