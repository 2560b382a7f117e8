"""Notifications end to end: a real collector over real RQ workers, real receivers on loopback.

Slack, PagerDuty and generic webhook receivers are threaded HTTP servers; e-mail goes to an aiosmtpd server
that requires STARTTLS and a login. Channels come from a real TOML config file with secrets in environment
variables and files.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from rq import Queue
from sqlalchemy import inspect, select, text, update

from collector.loop import Collector
from collector.notifier import ChannelNotifier, start_notifiers
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage.alert_feed import delivery_cursor, newest_event_id
from storage.engine import make_engine
from storage.notify_log import delivery_log
from storage.schema import alerts
from storage.writer import acknowledge_alert
from tests.collector import rq_jobs
from tests.collector.receivers import HttpReceiver, SmtpReceiver, wait_for
from tests.collector.test_rq_reader import run_burst_worker

SLACK_URL_SECRET = "T000/B000/slack-secret-path"
PD_ROUTING_KEY = "pd-routing-key-0123456789abcdef"
WEBHOOK_SECRET = "whsec-4f1c2a"
SMTP_PASSWORD = "smtp-pa55word"


class Site:
    """Receivers, a config file and the environment that names their secrets."""

    def __init__(self, tmp_path: Path):
        self.slack, self.slack_payments = HttpReceiver(), HttpReceiver()
        self.pagerduty, self.webhook = HttpReceiver(ok_status=202), HttpReceiver(ok_status=204)
        self.smtp = SmtpReceiver(tmp_path, "alerts@example.com", SMTP_PASSWORD)
        (tmp_path / "pd.key").write_text(PD_ROUTING_KEY + "\n")
        (tmp_path / "smtp.pw").write_text(SMTP_PASSWORD)
        self.env = {"SLACK_URL": self.slack.url + "/" + SLACK_URL_SECRET,
                    "SLACK_PAYMENTS_URL": self.slack_payments.url,
                    "QUEUEWATCH_WEBHOOK_URL": self.webhook.url, "QUEUEWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
        self.config = tmp_path / "queuewatch.toml"
        self.config.write_text(f"""
[notify]
retry_base_s = 0.2

[[notify.channels]]
name = "ops-slack"
type = "slack"
url_env = "SLACK_URL"
libraries = ["rq"]

[[notify.channels]]
name = "payments-slack"
type = "slack"
url_env = "SLACK_PAYMENTS_URL"
queues = ["payments-*"]

[[notify.channels]]
name = "pager"
type = "pagerduty"
routing_key_file = "{tmp_path / 'pd.key'}"
events_url = "{self.pagerduty.url}/v2/enqueue"
severities = ["warning", "critical"]

[[notify.channels]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = {self.smtp.port}
tls = "starttls"
ca_file = "{self.smtp.cert_path}"
username = "alerts@example.com"
password_file = "{tmp_path / 'smtp.pw'}"
from = "queuewatch@example.com"
to = ["oncall@example.com"]
""")

    def http(self) -> list[HttpReceiver]:
        return [self.slack, self.slack_payments, self.pagerduty, self.webhook]

    def close(self) -> None:
        for receiver in self.http():
            receiver.close()
        self.smtp.close()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def _collector(redis_url: str, db_url: str, site: Site) -> Collector:
    settings = load_settings(env=site.env, redis_url=redis_url, db_url=db_url, config_path=str(site.config))
    return Collector(settings, make_engine(db_url), RQReader(redis.Redis.from_url(redis_url), settle_s=0))


def _fill(redis_client, name: str, jobs: int = 215) -> None:
    queue = Queue(name, connection=redis_client)
    for _ in range(jobs):
        queue.enqueue(rq_jobs.noop)


def _all_processed(collector: Collector) -> bool:
    newest = newest_event_id(collector.engine)
    return all((delivery_cursor(collector.engine, c.cursor_name) or 0) >= newest for c in collector.settings.channels)


def test_an_alert_is_notified_once_per_routed_channel_then_resolved(redis_url, redis_client, db_url, site,
                                                                     caplog):
    caplog.set_level(logging.DEBUG)
    collector = _collector(redis_url, db_url, site)
    channels = collector.settings.channels
    assert [c.name for c in channels] == ["ops-slack", "payments-slack", "pager", "mail", "webhook"]
    stop = threading.Event()
    threads = start_notifiers(collector.engine, channels, stop, poll_s=0.05)
    try:
        _fill(redis_client, "bulk")
        assert collector.run_cycle().ok
        alert_id = wait_for(lambda: site.webhook.bodies(), what="the webhook")[0]["alert"]["id"]
        assert alert_id.startswith("alert-") and alert_id.endswith("-bulk-queue_depth")
        wait_for(lambda: site.slack.requests and site.pagerduty.requests and site.smtp.messages, what="channels")
        wait_for(lambda: _all_processed(collector), what="every cursor past the event")
        assert site.slack_payments.attempts == 0  # routed to payments-* queues only

        (slack,) = site.slack.bodies()
        assert slack["text"].startswith(":large_orange_circle: Alert firing: [WARNING] bulk:")
        assert site.slack.requests[0].path == "/hook/" + SLACK_URL_SECRET
        (trigger,) = site.pagerduty.bodies()
        assert (trigger["event_action"], trigger["dedup_key"], trigger["routing_key"]) == \
            ("trigger", alert_id, PD_ROUTING_KEY)
        assert trigger["payload"]["severity"] == "warning" and trigger["payload"]["source"] == "bulk"
        assert trigger["payload"]["group"] == "rq"
        (mail,) = site.smtp.messages
        assert mail["Subject"].startswith("[queuewatch] Alert firing: [WARNING] bulk:")
        assert mail["To"] == "oncall@example.com" and mail["X-Queuewatch-Alert"] == alert_id
        assert site.smtp.logins == ["alerts@example.com"]
        (hook,) = site.webhook.requests
        stamp = hook.headers["X-Queuewatch-Timestamp"]
        assert abs(int(stamp) - time.time()) < 60
        expected = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["X-Queuewatch-Signature"] == f"sha256={expected}"
        assert hook.json()["event"] == "alert:created"

        run_burst_worker(redis_url, "bulk")
        assert collector.run_cycle().ok
        wait_for(lambda: len(site.pagerduty.requests) == 2 and len(site.smtp.messages) == 2
                 and len(site.slack.requests) == 2 and len(site.webhook.requests) == 2, what="resolutions")
        resolve = site.pagerduty.bodies()[1]
        assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", alert_id)
        assert site.slack.bodies()[1]["text"].startswith(":white_check_mark: Alert resolved:")
        assert site.smtp.messages[1]["Subject"].startswith("[queuewatch] Alert resolved:")
        assert site.webhook.bodies()[1]["event"] == "alert:resolved"
        wait_for(lambda: _all_processed(collector), what="every cursor past the resolution")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    log = delivery_log(collector.engine)
    assert sorted(zip(log["channel"], log["event"], log["status"])) == sorted(
        (c, e, "delivered") for c in ("ops-slack", "pager", "mail", "webhook") for e in ("opened", "resolved"))
    for channel in channels:  # a restart sends nothing again
        assert ChannelNotifier(collector.engine, channel).step() == 0
    assert site.slack_payments.attempts == 0 and len(site.webhook.requests) == 2

    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (SLACK_URL_SECRET, PD_ROUTING_KEY, WEBHOOK_SECRET, SMTP_PASSWORD):
        assert secret not in logged


def test_a_failing_receiver_is_retried_with_backoff_and_logged(redis_url, redis_client, db_url, site, caplog):
    flaky = HttpReceiver(fail_first=3, fail_status=503)
    try:
        site.env["QUEUEWATCH_WEBHOOK_URL"] = flaky.url
        collector = _collector(redis_url, db_url, site)
        webhook = replace(collector.settings.channels[-1], retry_base_s=0.2, retry_cap_s=0.4)
        down = replace(webhook, name="down", consumer="", url=type(webhook.url)("http://127.0.0.1:9/x"),
                       max_attempts=2, retry_base_s=0.1, timeout_s=1)
        stop = threading.Event()
        threads = start_notifiers(collector.engine, [webhook, down], stop, poll_s=0.05)
        try:
            _fill(redis_client, "bulk")
            started = time.monotonic()
            assert collector.run_cycle().ok
            wait_for(lambda: flaky.requests, what="the delivery after three failures")
            took_s = time.monotonic() - started
            wait_for(lambda: set(delivery_log(collector.engine)["status"]) == {"delivered", "failed"},
                     what="both channels settled")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    finally:
        flaky.close()
    assert flaky.attempts == 4
    assert took_s >= 0.2 + 0.4 + 0.4 - 0.05  # waits of 0.2, 0.4 and the 0.4 cap between the four tries
    rows = {r["channel"]: r for r in delivery_log(collector.engine).to_dict("records")}
    assert (rows["webhook"]["status"], rows["webhook"]["attempts"], rows["webhook"]["last_error"]) == \
        ("delivered", 4, "HTTP 503")
    assert rows["down"]["status"] == "failed" and rows["down"]["attempts"] == 2
    assert "refused" in rows["down"]["last_error"].lower()
    assert any("gave up" in r.getMessage() for r in caplog.records)


def test_a_hanging_receiver_does_not_hold_up_collection(redis_url, redis_client, db_url, site):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        site.env["QUEUEWATCH_WEBHOOK_URL"] = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        collector = _collector(redis_url, db_url, site)
        webhook = replace(collector.settings.channels[-1], timeout_s=5)
        stop = threading.Event()
        threads = start_notifiers(collector.engine, [webhook], stop, poll_s=0.05)
        try:
            _fill(redis_client, "bulk")
            assert collector.run_cycle().ok  # opens the alert: the notifier now waits on the silent socket
            time.sleep(0.3)
            started = time.monotonic()
            for _ in range(3):
                assert collector.run_cycle().ok
            assert time.monotonic() - started < 3.0
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    finally:
        silent.close()


def _has_column(engine, name: str) -> bool:
    return name in {c["name"] for c in inspect(engine).get_columns("alerts")}


def test_a_silenced_alert_is_not_notified(redis_url, redis_client, db_url, site):
    collector = _collector(redis_url, db_url, site)
    if not _has_column(collector.engine, "silenced_by"):
        pytest.skip("the alerts table has no silenced_by column in this schema (silences come with alert rules)")
    _silenced_alert_is_not_notified(collector, redis_client, site)


def test_silences_and_snoozes_once_the_schema_has_them(redis_url, redis_client, db_url, site):
    """With the columns that silences and snoozes add, whichever schema version brings them."""
    collector = _collector(redis_url, db_url, site)
    with collector.engine.begin() as conn:
        for name, kind in (("silenced_by", "VARCHAR(320)"), ("acknowledged_until_s", "FLOAT")):
            if not _has_column(collector.engine, name):
                conn.execute(text(f"ALTER TABLE alerts ADD COLUMN {name} {kind}"))
    _silenced_alert_is_not_notified(collector, redis_client, site)
    _snoozed_alert_repeats_after_the_snooze(collector, redis_client, site)


def _silenced_alert_is_not_notified(collector: Collector, redis_client, site: Site) -> None:
    webhook = collector.settings.channels[-1]
    notifier = ChannelNotifier(collector.engine, webhook)
    _fill(redis_client, "quiet")
    assert collector.run_cycle().ok
    with collector.engine.begin() as conn:
        conn.execute(update(alerts).where(alerts.c.queue_name == "quiet").values(silenced_by="silence-1")
                     if "silenced_by" in alerts.c else
                     text("UPDATE alerts SET silenced_by = 'silence-1' WHERE queue_name = 'quiet'"))
    assert notifier.step() == 0
    assert site.webhook.attempts == 0
    assert delivery_cursor(collector.engine, webhook.cursor_name) == newest_event_id(collector.engine)
    assert delivery_log(collector.engine, channel=webhook.name).empty


class Clock:
    def __init__(self):
        self.now_s = time.time()

    def __call__(self) -> float:
        return self.now_s


def _snoozed_alert_repeats_after_the_snooze(collector: Collector, redis_client, site: Site) -> None:
    clock = Clock()
    webhook = replace(collector.settings.channels[-1], repeat_interval_s=600)
    notifier = ChannelNotifier(collector.engine, webhook, clock=clock)
    _fill(redis_client, "loud")
    assert collector.run_cycle().ok
    assert notifier.step() == 1
    alert_id = site.webhook.bodies()[-1]["alert"]["id"]
    clock.now_s += 599
    assert notifier.step() == 0  # not yet due
    clock.now_s += 2
    assert notifier.step() == 1 and site.webhook.bodies()[-1]["event"] == "alert:repeated"
    with collector.engine.begin() as conn:
        conn.execute(text("UPDATE alerts SET acknowledged = :yes, acknowledged_until_s = :until WHERE id = :id"),
                     {"yes": True, "until": clock.now_s + 3600, "id": alert_id})
    clock.now_s += 1200
    assert notifier.step() == 0  # snoozed: no repeat until the snooze ends
    clock.now_s += 2401
    assert notifier.step() == 1 and site.webhook.bodies()[-1]["event"] == "alert:repeated"
    with collector.engine.begin() as conn:
        conn.execute(text("UPDATE alerts SET acknowledged_until_s = NULL WHERE id = :id"), {"id": alert_id})
    clock.now_s += 3600
    assert notifier.step() == 0  # acknowledged for good: no more repeats
    with collector.engine.connect() as conn:
        assert conn.execute(select(alerts.c.resolved_at_s).where(alerts.c.id == alert_id)).scalar() is None


def test_an_unacknowledged_alert_repeats_until_acknowledged(redis_url, redis_client, db_url, site):
    collector = _collector(redis_url, db_url, site)
    clock = Clock()
    pager = replace(collector.settings.channels[2], repeat_interval_s=60)
    notifier = ChannelNotifier(collector.engine, pager, clock=clock)
    _fill(redis_client, "bulk")
    assert collector.run_cycle().ok
    assert notifier.step() == 1
    clock.now_s += 61
    assert notifier.step() == 1
    assert [b["event_action"] for b in site.pagerduty.bodies()] == ["trigger", "trigger"]
    alert_id = site.pagerduty.bodies()[0]["dedup_key"]
    acknowledge_alert(collector.engine, alert_id, "ops@example.com", clock.now_s)
    clock.now_s += 61
    assert notifier.step() == 1  # the acknowledgement, and no repeat
    assert [b["event_action"] for b in site.pagerduty.bodies()] == ["trigger", "trigger", "acknowledge"]
    assert {b["dedup_key"] for b in site.pagerduty.bodies()} == {alert_id}
    clock.now_s += 3600
    assert notifier.step() == 0


def test_the_collect_command_notifies_from_its_own_threads(redis_url, redis_client, db_url, site):
    """`queuewatch collect` as a real process: the channels of its config file fire, and its log shows
    channel names but no secret."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    _fill(redis_client, "bulk")
    env = {**os.environ, **site.env, "QUEUEWATCH_CONFIG": str(site.config), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "-v", "collect", "--redis", redis_url,
                             "--db", db_url, "--interval", "0.5"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: site.webhook.requests and site.slack.requests and site.pagerduty.requests
                 and site.smtp.messages, timeout_s=60, what="every routed channel")
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "notifying alerts on ops-slack (slack), payments-slack (slack), pager (pagerduty)" in stderr
    assert site.slack_payments.attempts == 0
    for secret in (SLACK_URL_SECRET, PD_ROUTING_KEY, WEBHOOK_SECRET, SMTP_PASSWORD):
        assert secret not in stderr + stdout
