"""Notification rules without I/O: routes, which events are sent, repeats, signatures."""
from __future__ import annotations

import hashlib
import hmac

from core.notify import AlertState, Route, repeat_due, should_send, webhook_signature

FIRING = AlertState(resolved=False, acknowledged=False, silenced=False, snoozed_until_s=None)


def test_routes_filter_by_severity_queue_glob_and_library():
    assert Route().matches("warning", "anything", [])
    route = Route(severities=("critical",), queues=("payments-*", "billing"), libraries=("rq", "celery"))
    assert route.matches("critical", "payments-eu", ["rq"])
    assert route.matches("critical", "billing", ["bullmq", "celery"])
    assert not route.matches("warning", "payments-eu", ["rq"])
    assert not route.matches("critical", "payments", ["rq"])  # the glob needs the dash
    assert not route.matches("critical", "billing", ["bullmq"])
    assert not route.matches("critical", "billing", [])  # library unknown: a library route does not match


def test_triggers_need_a_route_and_no_silence_follow_ups_need_an_announcement():
    silenced = AlertState(False, False, True, None)
    assert should_send("opened", True, FIRING, False)
    assert should_send("escalated", True, FIRING, True)
    assert not should_send("opened", False, FIRING, False)
    assert not should_send("opened", True, silenced, False)
    assert should_send("resolved", False, FIRING, True)
    assert not should_send("resolved", True, FIRING, False)
    assert should_send("acknowledged", True, FIRING, True)
    assert not should_send("deescalated", True, FIRING, True)


def test_repeats_wait_the_interval_and_stop_when_acknowledged_silenced_or_resolved():
    assert repeat_due(FIRING, True, 0.0, 100.0, 100.0)
    assert not repeat_due(FIRING, True, 0.0, 99.9, 100.0)
    assert not repeat_due(FIRING, True, 0.0, 1e9, 0.0)  # 0 turns repeats off
    assert not repeat_due(FIRING, False, 0.0, 1e9, 100.0)
    assert not repeat_due(AlertState(False, True, False, None), True, 0.0, 1e9, 100.0)
    assert not repeat_due(AlertState(False, False, True, None), True, 0.0, 1e9, 100.0)
    assert not repeat_due(AlertState(True, False, False, None), True, 0.0, 1e9, 100.0)
    snoozed = AlertState(False, True, False, 500.0)
    assert not repeat_due(snoozed, True, 0.0, 499.0, 100.0)
    assert repeat_due(snoozed, True, 0.0, 500.0, 100.0)


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"event": "alert:created"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("k", 1700000000, body) == f"sha256={expected}"
    assert webhook_signature("k", 1700000001, body) != webhook_signature("k", 1700000000, body)
