"""The generic webhook channel over stored cycles: order, resume, signatures, backoff, giving up."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from collector.notifier import ChannelNotifier
from config.notify import legacy_webhook
from config.settings import load_settings
from storage.notify_log import delivery_log
from storage.writer import acknowledge_alert
from tests.collector.receivers import HttpReceiver
from tests.storage.test_writer import _cycle


@pytest.fixture
def receiver():
    r = HttpReceiver(ok_status=204)
    yield r
    r.close()


class Clock:
    def __init__(self, now_s: float = 1000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def _webhook(url: str, secret: str | None = None, **changes):
    from dataclasses import replace

    return replace(legacy_webhook(url, secret), **changes)


def test_events_are_posted_in_order_and_once_across_restarts(engine, receiver):
    _cycle(engine, 10.0, q=5)  # history before the notifier starts is not replayed
    notifier = ChannelNotifier(engine, _webhook(receiver.url))
    _cycle(engine, 20.0, q=215)
    acknowledge_alert(engine, "alert-20-q-queue_depth", "ops@example.com", 25.0)
    _cycle(engine, 30.0, q=5000)
    _cycle(engine, 40.0, q=1)
    assert notifier.step() == 4
    events = [(b["event"], b["change"]) for b in receiver.bodies()]
    assert events == [("alert:created", "opened"), ("alert:acknowledged", "acknowledged"),
                      ("alert:escalated", "escalated"), ("alert:resolved", "resolved")]
    assert receiver.bodies()[0]["alert"]["id"] == "alert-20-q-queue_depth"
    assert "X-Queuewatch-Signature" not in receiver.requests[0].headers  # no secret, no signature
    assert notifier.step() == 0
    assert ChannelNotifier(engine, _webhook(receiver.url)).step() == 0  # the cursor survives a restart


def test_settings_keep_the_webhook_url_channel_and_sign_with_the_secret(engine, receiver):
    settings = load_settings(env={"QUEUEWATCH_WEBHOOK_URL": receiver.url, "QUEUEWATCH_WEBHOOK_SECRET": "k3y"})
    (channel,) = settings.channels
    assert channel.type == "webhook" and channel.cursor_name == "webhook"
    assert "k3y" not in repr(settings) and receiver.url not in repr(channel)
    notifier = ChannelNotifier(engine, channel)
    _cycle(engine, 20.0, q=215)
    assert notifier.step() == 1
    request = receiver.requests[0]
    timestamp = request.headers["X-Queuewatch-Timestamp"]
    expected = hmac.new(b"k3y", timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Queuewatch-Signature"] == f"sha256={expected}"


def test_a_resolution_of_an_alert_never_announced_is_not_sent(engine, receiver):
    _cycle(engine, 20.0, q=215)  # opened before the channel existed
    notifier = ChannelNotifier(engine, _webhook(receiver.url))
    _cycle(engine, 40.0, q=1)
    assert notifier.step() == 0 and receiver.attempts == 0


def test_failures_back_off_then_deliver(engine):
    receiver = HttpReceiver(fail_first=2)
    clock = Clock()
    try:
        notifier = ChannelNotifier(engine, _webhook(receiver.url, retry_base_s=10), clock=clock)
        _cycle(engine, 20.0, q=215)
        assert notifier.step() == 0 and receiver.attempts == 1
        assert notifier.step() == 0 and receiver.attempts == 1  # waiting out the backoff
        clock.now_s += 10
        assert notifier.step() == 0 and receiver.attempts == 2
        clock.now_s += 19
        assert notifier.step() == 0 and receiver.attempts == 2  # second wait is 20 s
        clock.now_s += 1
        assert notifier.step() == 1 and len(receiver.requests) == 1
        (row,) = delivery_log(engine).to_dict("records")
        assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, "HTTP 503")
    finally:
        receiver.close()


def test_an_unreachable_url_is_given_up_after_max_attempts(engine):
    clock = Clock()
    notifier = ChannelNotifier(engine, _webhook("http://127.0.0.1:9/nothing-listens", max_attempts=2,
                                                retry_base_s=1, timeout_s=1), clock=clock)
    _cycle(engine, 20.0, q=215)
    assert notifier.step() == 0
    clock.now_s += 1
    assert notifier.step() == 0  # skipped after the last attempt, so later alerts still go out
    (row,) = delivery_log(engine).to_dict("records")
    assert row["status"] == "failed" and row["attempts"] == 2 and "refused" in row["last_error"].lower()
    assert notifier.step() == 0 and len(delivery_log(engine)) == 1  # not tried again


def test_a_client_error_is_not_retried(engine):
    receiver = HttpReceiver(fail_first=5, fail_status=400)
    try:
        notifier = ChannelNotifier(engine, _webhook(receiver.url))
        _cycle(engine, 20.0, q=215)
        assert notifier.step() == 0 and receiver.attempts == 1
        (row,) = delivery_log(engine).to_dict("records")
        assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, "HTTP 400")
    finally:
        receiver.close()


def _readme_verifier():
    """The receiver-side `verify` function exactly as README.md shows it."""
    import re

    from tests.conftest import REPO_ROOT

    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    (source,) = [b for b in blocks if "def verify(" in b]
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the documented snippet itself is under test
    return namespace["verify"]


def test_the_readme_snippet_verifies_real_requests_and_rejects_tampering_and_replays(engine, receiver):
    verify = _readme_verifier()
    clock = Clock(__import__("time").time())
    notifier = ChannelNotifier(engine, _webhook(receiver.url, "k3y"), clock=clock)
    _cycle(engine, 20.0, q=215)
    assert notifier.step() == 1
    request = receiver.requests[0]
    assert verify(b"k3y", request.headers, request.body)
    assert not verify(b"other", request.headers, request.body)
    assert not verify(b"k3y", request.headers, request.body.replace(b"queue_depth", b"queue_dept_"))
    old = {**request.headers, "X-Queuewatch-Timestamp": str(int(clock.now_s) - 3600)}
    assert not verify(b"k3y", old, request.body)


def test_a_restart_during_retries_continues_the_same_log_row(engine):
    receiver = HttpReceiver(fail_first=1)
    try:
        _cycle(engine, 10.0, q=5)
        ChannelNotifier(engine, _webhook(receiver.url))  # the channel exists from here on
        _cycle(engine, 20.0, q=215)
        assert ChannelNotifier(engine, _webhook(receiver.url)).step() == 0  # fails, then the process "stops"
        (row,) = delivery_log(engine).to_dict("records")
        assert (row["status"], row["attempts"]) == ("retrying", 1)
        assert ChannelNotifier(engine, _webhook(receiver.url)).step() == 1
        (row,) = delivery_log(engine).to_dict("records")
        assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 2, "HTTP 503")
        assert len(receiver.requests) == 1
    finally:
        receiver.close()
