from __future__ import annotations

from core.alert_rules import OpenAlert, alert_id, plan
from core.health import ThresholdSet, evaluate


def _breaches(**metrics):
    return evaluate(metrics, ThresholdSet())


def test_opens_with_the_spec_id():
    changes = plan([], {"email-campaigns": _breaches(waiting=215)}, 1729342800.7)
    assert [(c.kind, c.alert_id, c.severity, c.value, c.threshold) for c in changes] == [
        ("opened", "alert-1729342800-email-campaigns-queue_depth", "warning", 215.0, 200.0)]
    assert alert_id(1.9, "q", "error_rate") == "alert-1-q-error_rate"


def test_no_duplicate_while_open_then_escalate_deescalate_resolve():
    open_ = [OpenAlert("alert-1-q-queue_depth", "q", "queue_depth", "warning")]
    assert [c.kind for c in plan(open_, {"q": _breaches(waiting=300)}, 2)] == ["updated"]
    escalate = plan(open_, {"q": _breaches(waiting=5000)}, 3)
    assert [(c.kind, c.alert_id, c.severity) for c in escalate] == [("escalated", "alert-1-q-queue_depth", "critical")]
    critical = [OpenAlert("alert-1-q-queue_depth", "q", "queue_depth", "critical")]
    assert [c.kind for c in plan(critical, {"q": _breaches(waiting=300)}, 4)] == ["deescalated"]
    assert [c.kind for c in plan(critical, {"q": _breaches(waiting=3)}, 5)] == ["resolved"]


def test_alerts_of_a_vanished_queue_resolve():
    open_ = [OpenAlert("alert-1-gone-error_rate", "gone", "error_rate", "warning")]
    assert [(c.kind, c.alert_id) for c in plan(open_, {}, 9)] == [("resolved", "alert-1-gone-error_rate")]
