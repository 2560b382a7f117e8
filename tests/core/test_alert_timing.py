"""Pending, keep-firing and min_jobs as pure planning (time passed in)."""
from __future__ import annotations

import pytest

from core.alert_rules import AlertTiming, AlertTimings, OpenAlert, RuleState, plan_cycle
from core.derive import QueueWindow, WindowEntry
from core.health import ThresholdSet, evaluate
from core.silences import Silence, parse_duration_s, silence_for
from core.sketch import Sketch
from core.system_alerts import stale_breach

TIMINGS = AlertTimings(AlertTiming(pending_s=60, keep_firing_s=120),
                       {"bulk-imports": AlertTiming(pending_s=300, keep_firing_s=120)})
DEEP = {"q": evaluate({"waiting": 215}, ThresholdSet())}
CLEAR = {"q": []}


def _run(breaches_by_time: list[tuple[float, dict]], timings: AlertTimings = TIMINGS):
    """Plan cycle after cycle, carrying open alerts and timers as the store would; returns every change."""
    open_alerts: dict = {}
    states: dict = {}
    changes = []
    for now_s, breaches in breaches_by_time:
        plan = plan_cycle(open_alerts.values(), breaches, now_s, states=states.values(), timings=timings)
        for change in plan.changes:
            key = (change.queue_name, change.alert_type)
            if change.kind == "resolved":
                open_alerts.pop(key)
            else:
                open_alerts[key] = OpenAlert(open_alerts[key].id if key in open_alerts else change.alert_id,
                                             *key, change.severity)
            changes.append((now_s, change.kind, change.alert_id))
        for key, state in plan.states.items():
            if state is None:
                states.pop(key, None)
            else:
                states[key] = state
    return changes, states


def test_a_breach_is_pending_until_it_held_pending_s():
    changes, states = _run([(0, DEEP), (30, DEEP), (59, DEEP)])
    assert changes == [] and states[("q", "queue_depth")].pending_since_s == 0
    changes, _ = _run([(0, DEEP), (30, DEEP), (60, DEEP)])
    assert changes == [(60, "opened", "alert-60-q-queue_depth")]


def test_a_short_breach_never_opens_and_its_timer_goes():
    changes, states = _run([(0, DEEP), (50, CLEAR), (100, DEEP), (150, DEEP)])
    assert changes == [] and states[("q", "queue_depth")].pending_since_s == 100


def test_keep_firing_then_resolve_and_a_flap_keeps_the_id():
    timeline = [(0, DEEP), (60, DEEP), (70, CLEAR), (150, DEEP), (160, CLEAR), (279, CLEAR), (280, CLEAR)]
    changes, states = _run(timeline)
    assert [(at, kind) for at, kind, _ in changes if kind != "updated"] == [(60, "opened"), (280, "resolved")]
    assert {alert_id for _, _, alert_id in changes} == {"alert-60-q-queue_depth"}
    assert states == {}


def test_per_queue_timing():
    changes, _ = _run([(0, {"bulk-imports": DEEP["q"]}), (299, {"bulk-imports": DEEP["q"]})])
    assert changes == []
    changes, _ = _run([(0, {"bulk-imports": DEEP["q"]}), (300, {"bulk-imports": DEEP["q"]})])
    assert [kind for _, kind, _ in changes] == ["opened"]


def test_stored_timers_carry_over():
    state = RuleState("q", "queue_depth", pending_since_s=10)
    plan = plan_cycle([], DEEP, 70, states=[state], timings=TIMINGS)
    assert [c.kind for c in plan.changes] == ["opened"]


def test_an_unevaluated_queue_is_left_alone_unless_every_backend_answered():
    open_ = [OpenAlert("a", "q", "queue_depth", "warning")]
    state = RuleState("q", "queue_depth", clear_since_s=0)
    kept = plan_cycle(open_, {}, 500, states=[state], timings=TIMINGS, resolve_unseen=False)
    assert kept.changes == [] and kept.states == {}
    gone = plan_cycle(open_, {}, 500, states=[state], timings=TIMINGS)
    assert [c.kind for c in gone.changes] == ["resolved"] and gone.states == {("q", "queue_depth"): None}


def test_min_jobs_holds_back_rates_of_few_jobs():
    metrics = {"errorRate": 33.3, "timeoutRate": 0.0, "waiting": 215}
    few = evaluate(metrics, ThresholdSet(), ended_jobs=3, min_jobs=20)
    assert [b.alert_type.value for b in few] == ["queue_depth"]
    enough = evaluate(metrics, ThresholdSet(), ended_jobs=20, min_jobs=20)
    assert [b.alert_type.value for b in enough] == ["queue_depth", "error_rate"]


def test_the_window_counts_ended_jobs():
    window = QueueWindow()
    window.push(WindowEntry(100.0, 10.0, 7, 3, 1, Sketch(), Sketch()))
    window.push(WindowEntry(110.0, 10.0, 2, 0, 0, Sketch(), Sketch()))
    assert window.ended_jobs(110.0) == 12
    assert window.ended_jobs(395.0) == pytest.approx(5.0 + 2.0)  # half of the first interval is left


def test_silences_match_and_expire():
    silences = [Silence(2, 0, 100, queue_glob="bulk-*"), Silence(3, 0, 50, alert_type="error_rate")]
    assert silence_for(silences, 10, "bulk-imports", "rq", "queue_depth", "warning") == 2
    assert silence_for(silences, 10, "emails", "rq", "error_rate", "critical") == 3
    assert silence_for(silences, 60, "emails", "rq", "error_rate", "critical") is None
    assert silence_for(silences, 100, "bulk-imports", "rq", "queue_depth", "warning") is None
    assert silence_for([Silence(4, 0, 100, library="celery")], 1, "bulk-x", "rq", "queue_depth", "warning") is None


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("2h30m", 9000), ("1d", 86400), ("600", 600)])
def test_durations(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "2x", "h", "1h-", "inf"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration_s(text)


def test_stale_after_three_intervals():
    assert stale_breach(None, 100, 10) is None
    assert stale_breach(70, 100, 10) is None
    breach = stale_breach(69, 100, 10)
    assert breach.value == 31 and breach.threshold == 30
