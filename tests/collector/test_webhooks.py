from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from collector.webhooks import WebhookNotifier
from storage.writer import acknowledge_alert
from tests.storage.test_writer import _cycle


class Receiver:
    """A real HTTP endpoint on loopback that records POSTs and fails the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0):
        self.bodies: list[dict] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Clock:
    def __init__(self, now_s: float = 1000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_opened_escalated_and_acknowledged_are_posted_in_order(engine, receiver):
    _cycle(engine, 10.0, q=5)  # history before the notifier starts is not replayed
    notifier = WebhookNotifier(engine, receiver.url)
    _cycle(engine, 20.0, q=215)
    acknowledge_alert(engine, "alert-20-q-queue_depth", "ops@example.com", 25.0)
    _cycle(engine, 30.0, q=5000)
    _cycle(engine, 40.0, q=1)  # resolved: not a notification
    assert notifier.deliver_pending() == 3
    events = [(b["event"], b["change"], b["alert"]["severity"]) for b in receiver.bodies]
    assert events == [("alert:created", "opened", "critical"), ("alert:acknowledged", "acknowledged", "critical"),
                      ("alert:escalated", "escalated", "critical")]
    assert receiver.bodies[0]["alert"]["id"] == "alert-20-q-queue_depth"
    assert notifier.deliver_pending() == 0
    assert WebhookNotifier(engine, receiver.url).deliver_pending() == 0  # the cursor survives a restart


def test_failures_back_off_then_deliver(engine):
    receiver = Receiver(fail_first=2)
    clock = Clock()
    try:
        notifier = WebhookNotifier(engine, receiver.url, backoff_base_s=10, clock=clock)
        _cycle(engine, 20.0, q=215)
        assert notifier.deliver_pending() == 0 and receiver.attempts == 1
        assert notifier.deliver_pending() == 0 and receiver.attempts == 1  # waiting out the backoff
        clock.now_s += 10
        assert notifier.deliver_pending() == 0 and receiver.attempts == 2
        clock.now_s += 19
        assert notifier.deliver_pending() == 0 and receiver.attempts == 2  # second wait is 20 s
        clock.now_s += 1
        assert notifier.deliver_pending() == 1 and len(receiver.bodies) == 1
    finally:
        receiver.close()


def test_an_unreachable_url_is_given_up_after_max_attempts(engine):
    clock = Clock()
    notifier = WebhookNotifier(engine, "http://127.0.0.1:9/nothing-listens", max_attempts=2, backoff_base_s=1,
                               clock=clock, timeout_s=1)
    _cycle(engine, 20.0, q=215)
    assert notifier.deliver_pending() == 0
    clock.now_s += 1
    assert notifier.deliver_pending() == 1  # skipped after the last attempt, so later alerts still go out
