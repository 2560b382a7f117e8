"""The Alerts page through AppTest over a seeded database: grouping, silences, snooze, bulk, pending, stale."""
from __future__ import annotations

import re
import time

from sqlalchemy import func, select

from core.alert_rules import RuleState
from storage.alert_state import save_rule_states
from storage.engine import make_engine
from storage.schema import alert_events, alert_rule_states, alerts, silences
from tests.dashboard.test_pages import _app, _texts


def _rows(url: str, table, *where):
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(table).where(*where)).mappings()]
    engine.dispose()
    return rows


def _alerts_page():
    at = _app()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception
    return at


def test_alerts_are_grouped_by_queue(seeded_url):
    at = _alerts_page()
    headings = [t for t in _texts(at.text).splitlines() if re.fullmatch(r"Queue \S+ — \d+ open", t)]
    open_by_queue: dict[str, int] = {}
    for row in _rows(seeded_url, alerts, alerts.c.resolved_at_s.is_(None)):
        open_by_queue[row["queue_name"]] = open_by_queue.get(row["queue_name"], 0) + 1
    assert sorted(headings) == sorted(f"Queue {q} — {n} open" for q, n in open_by_queue.items())
    assert headings[0].startswith("Queue thumbnails ")  # the queue with the critical alert comes first


def test_silence_from_an_alert(seeded_url):
    at = _alerts_page()
    button = next(b for b in at.button if b.key and b.key.startswith("silence-") and "reports-" in b.key)
    alert_id = button.key.removeprefix("silence-")
    button.click().run()
    assert at.text_input(key="silence_queue").value == "reports"
    (alert,) = _rows(seeded_url, alerts, alerts.c.id == alert_id)
    assert at.selectbox(key="silence_type").value == alert["alert_type"]
    at.text_input(key="silence_comment").input("deploy in progress")
    at.text_input(key="silence_for").input("30m")
    at.button(key="FormSubmitter:silence_form-Add silence").click().run()
    assert not at.exception and not at.error
    (silence,) = _rows(seeded_url, silences)
    assert silence["queue_glob"] == "reports" and silence["created_by"] == "ops@example.com"
    assert abs(silence["ends_at_s"] - silence["starts_at_s"] - 1800) < 1
    (row,) = _rows(seeded_url, alerts, alerts.c.id == alert_id)
    assert row["silenced_by"] == silence["id"]
    assert f"Silenced by silence #{silence['id']} (notifications skip it)" in _texts(at.text)
    at.button(key=f"expire-silence-{silence['id']}").click().run()
    (row,) = _rows(seeded_url, alerts, alerts.c.id == alert_id)
    assert row["silenced_by"] is None


def test_a_bad_silence_is_refused_with_a_reason(seeded_url):
    at = _alerts_page()
    at.text_input(key="silence_comment").input("x")
    at.text_input(key="silence_for").input("soon")
    at.button(key="FormSubmitter:silence_form-Add silence").click().run()
    assert "not a duration" in at.error[0].value and _rows(seeded_url, silences) == []


def test_acknowledge_for_a_while_and_in_bulk(seeded_url):
    at = _alerts_page()
    at.selectbox(key="alerts_ack_for").set_value("1 h").run()
    button = next(b for b in at.button if b.key and b.key.startswith("ack-"))
    button.click().run()
    (row,) = _rows(seeded_url, alerts, alerts.c.id == button.key.removeprefix("ack-"))
    assert row["acknowledged"] and abs(row["acknowledged_until_s"] - time.time() - 3600) < 120
    assert any(line.startswith("until ") for line in _texts(at.text).splitlines())
    at.selectbox(key="alerts_ack_for").set_value("Until resolved").run()
    bulk = at.button(key="bulk-ack")
    assert bulk.label == "Acknowledge all 4 shown"
    bulk.click().run()
    open_rows = _rows(seeded_url, alerts, alerts.c.resolved_at_s.is_(None))
    assert all(r["acknowledged"] for r in open_rows)
    assert sum(r["acknowledged_until_s"] is None for r in open_rows) == len(open_rows) - 1


def test_pending_breaches_are_shown_apart(seeded_url):
    engine = make_engine(seeded_url)
    with engine.begin() as conn:
        save_rule_states(conn, {("emails", "error_rate"): RuleState(
            "emails", "error_rate", pending_since_s=time.time() - 5, severity="warning",
            message="Error rate above warning threshold", value=7.5, threshold=5.0, library="rq")}, time.time())
    engine.dispose()
    at = _alerts_page()
    assert any(s.value == "Pending (1)" for s in at.subheader)
    table = next(d.value for d in at.dataframe if "Fires at" in d.value.columns)
    assert table[["Queue", "Type", "Severity", "Value"]].values.tolist() == [["emails", "error_rate", "warning", 7.5]]


def test_stale_data_is_shown_on_read_and_nothing_is_written(seeded_url, monkeypatch):
    monkeypatch.setenv("QUEUEWATCH_INTERVAL_S", "0.1")  # the seed's newest cycle is older than 3 intervals

    def counts():
        engine = make_engine(seeded_url)
        with engine.connect() as conn:
            found = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (alerts, alert_events, alert_rule_states)]
        engine.dispose()
        return found

    before = counts()
    at = _alerts_page()
    assert any(w.value.startswith("Stale data: no collection cycle stored for") for w in at.warning)
    assert counts() == before
