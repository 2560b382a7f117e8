"""The Alerts page's delivery log section, over a seeded database with real delivery log rows."""
from __future__ import annotations

import time

from storage.engine import make_engine
from storage.notify_log import Attempt, record_attempt
from storage.queries import list_alerts
from tests.dashboard.test_pages import _app


def test_the_alerts_page_shows_each_delivery_with_its_attempts_and_last_error(seeded_url):
    engine = make_engine(seeded_url)
    first, second = [a["id"] for a in list_alerts(engine)[:2]]
    now_s = time.time()
    pending = record_attempt(engine, Attempt("ops-slack", first, "opened", 1, now_s - 60, "HTTP 503", False,
                                             now_s - 58), None)
    record_attempt(engine, Attempt("ops-slack", first, "opened", 1, now_s - 58, None, True), pending)
    record_attempt(engine, Attempt("pager", second, "opened", 2, now_s - 30, "no answer: [Errno 111] refused",
                                   False, now_s + 30), None)
    engine.dispose()

    at = _app()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception
    assert "Notifications" in [h.value for h in at.subheader]
    table = next(df.value for df in at.dataframe if "Channel" in df.value.columns)
    rows = {(r["Channel"], r["Alert"]): r for r in table.to_dict("records")}
    assert len(rows) == 2
    slack, pager = rows[("ops-slack", first)], rows[("pager", second)]
    assert (slack["Status"], slack["Attempts"], slack["Last error"]) == ("✅ delivered", 2, "HTTP 503")
    assert (pager["Status"], pager["Attempts"]) == ("⏳ retrying", 1)
    assert pager["Last error"] == "no answer: [Errno 111] refused"
    assert str(pager["Delivered"]) in ("NaT", "None")


def test_without_deliveries_the_section_says_how_channels_are_set(seeded_url):
    at = _app()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception
    assert any("No notifications sent yet" in c.value for c in at.caption)
