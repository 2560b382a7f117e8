from __future__ import annotations

import pytest

from core.health import AlertType, Severity, Thresholds, ThresholdSet, evaluate, status_of


def test_issue_string_matches_the_spec():
    breaches = evaluate({"waiting": 215}, ThresholdSet())
    assert [b.issue for b in breaches] == ["Queue depth above warning threshold (215 > 200)"]
    assert breaches[0].message == "Queue depth above warning threshold"
    assert status_of(breaches) == "warning"


def test_levels_are_strictly_above():
    assert evaluate({"waiting": 200}, ThresholdSet()) == []
    critical = evaluate({"waiting": 1001}, ThresholdSet())
    assert critical[0].severity is Severity.CRITICAL and critical[0].threshold == 1000
    assert status_of(critical) == "critical"


def test_every_alert_type_and_memory_message():
    metrics = {"waiting": 5, "errorRate": 6.0, "timeoutRate": 6.0, "p95ProcessingTimeMs": 40_000,
               "memoryUsageMB": 1850}
    by_type = {b.alert_type: b for b in evaluate(metrics, ThresholdSet())}
    assert set(by_type) == {AlertType.ERROR_RATE, AlertType.TIMEOUT_RATE, AlertType.PROCESSING_TIME,
                            AlertType.MEMORY_USAGE}
    assert by_type[AlertType.ERROR_RATE].severity is Severity.WARNING
    assert by_type[AlertType.TIMEOUT_RATE].severity is Severity.CRITICAL
    assert by_type[AlertType.MEMORY_USAGE].message == "Worker memory usage critical"
    assert by_type[AlertType.MEMORY_USAGE].issue == "Worker memory usage above critical threshold (1850MB > 1024MB)"
    assert by_type[AlertType.ERROR_RATE].issue == "Error rate above warning threshold (6% > 5%)"


def test_unknown_figures_are_not_judged():
    assert evaluate({"waiting": 0, "p95ProcessingTimeMs": None, "memoryUsageMB": None}, ThresholdSet()) == []


def test_per_queue_overrides():
    thresholds = Thresholds(per_queue={"bulk": ThresholdSet(queue_depth_warning=5000, queue_depth_critical=9000)})
    assert thresholds.for_queue("bulk").queue_depth_warning == 5000
    assert thresholds.for_queue("other").queue_depth_warning == 200


def test_validation():
    with pytest.raises(ValueError):
        ThresholdSet(queue_depth_warning=10, queue_depth_critical=5).validate()
