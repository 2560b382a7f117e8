from __future__ import annotations

import json
import os
import re
import time

import pandas as pd
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from dashboard import charts
from accounts.accounts import add_user
from storage.engine import make_engine
from storage.schema import alerts
from storage.users import user_by_email
from storage.writer import CycleRecord, write_cycle
from tests.conftest import REPO_ROOT

APP = str(REPO_ROOT / "app.py")
PAGES = ("pages/overview.py", "pages/queue_detail.py", "pages/workers.py", "pages/alerts.py",
         "pages/export.py")

PASSWORD = "correct horse battery"


def _ensure_user(db_url: str, email: str, role: str) -> None:
    engine = make_engine(db_url)
    if user_by_email(engine, email) is None:
        add_user(engine, email, role, PASSWORD)
    engine.dispose()


def _log_in(at: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login-email").input(email)
    at.text_input(key="login-password").input(password)
    next(b for b in at.button if b.label == "Log in").click()
    return at.run()


def _app(email: str = "ops@example.com", role: str = "ADMIN") -> AppTest:
    """The app, logged in as `email` (created with `role` in the configured database if missing)."""
    _ensure_user(os.environ["QUEUEWATCH_DB_URL"], email, role)
    return _log_in(AppTest.from_file(APP, default_timeout=60).run(), email)


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def _texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def _unescaped(text: str) -> str:
    """Markdown source with its backslash escapes removed (how data put into markdown reads on screen)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _shown(table) -> pd.DataFrame:
    """A st.dataframe's cells as the browser shows them: its missing values as the table's placeholder."""
    return table.value.astype(object).where(table.value.notna(), table.proto.placeholder)


def _charts(at: AppTest) -> list:
    """The page's live charts (dashboard.live_chart components)."""
    return [c for c in at.get("bidi_component") if c.proto.component_name == "queuewatch.live_chart"]


def _figures(at: AppTest) -> dict[str, dict]:
    """The page's Plotly figures by title (each with the time-axis group it shares under "group")."""
    specs = []
    for chart in _charts(at):
        data = json.loads(chart.proto.json)
        payload = json.loads(data) if isinstance(data, str) else data
        specs.append({**payload["figure"], "group": payload["group"]})
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def test_overview_shows_the_summary(seeded_url):
    at = _app()
    assert not at.exception
    metrics = _metrics(at)
    # Five queues: the three RQ queues, the BullMQ and the Celery queue of the seed (both healthy).
    assert metrics["Queues"] == "5" and metrics["Critical"] == "1" and metrics["Open alerts"] == "5"
    assert int(metrics["Waiting"].replace(",", "")) > 260 and metrics["Active"] == "14"
    table = at.dataframe[0].value
    assert table["Queue"].tolist() == ["thumbnails", "reports", "celery", "emails", "notifications"]
    assert table["Library"].tolist() == ["rq", "rq", "celery", "rq", "bullmq"]  # critical first


def test_every_page_renders_on_a_seeded_database(seeded_url):
    at = _app()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        assert not at.error, (page, _texts(at.error))
    at.switch_page("pages/queue_detail.py").run()
    assert at.selectbox(key="queue_detail_queue").value == "celery · celery"  # the first name
    at.selectbox(key="queue_detail_queue").set_value("emails · rq").run()
    assert len(_charts(at)) == 6
    assert _metrics(at)["Jobs timed"] not in ("0", "n/a")
    at.switch_page("pages/workers.py").run()
    assert len(_charts(at)) == 2
    workers = at.dataframe[0].value
    assert any("stale" in state for state in workers["State"])
    assert workers.set_index("Worker").loc["worker-asset-2", "Should recycle"]
    at.switch_page("pages/export.py").run()
    assert [b.key for b in at.download_button] == ["export_snapshots", "export_workers", "export_alerts"]


def test_queue_detail_follows_the_queue_and_range(seeded_url):
    at = _app()
    at.switch_page("pages/queue_detail.py").run()
    at.selectbox(key="queue_detail_queue").set_value("reports · rq").run()
    at.radio(key="queue_detail_range").set_value("7 d").run()
    assert not at.exception
    assert len(_charts(at)) == 6
    at.radio(key="queue_detail_range").set_value("Custom").run()
    assert not at.exception


def test_acknowledge_button_acknowledges_in_the_database(seeded_url):
    at = _app()
    at.switch_page("pages/alerts.py").run()
    buttons = [b for b in at.button if b.key and b.key.startswith("ack-")]
    assert len(buttons) == 5
    alert_id = buttons[0].key.removeprefix("ack-")
    buttons[0].click().run()
    assert not at.exception
    engine = make_engine(seeded_url)
    with engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().one()
    engine.dispose()
    assert row["acknowledged"] is True and row["acknowledged_by"] == "ops@example.com"
    assert abs(row["acknowledged_at_s"] - time.time()) < 120
    assert f"ack-{alert_id}" not in [b.key for b in at.button]
    assert "by ops@example.com" in _texts(at.text)


def test_alert_filters(seeded_url):
    at = _app()
    at.switch_page("pages/alerts.py").run()
    at.selectbox(key="alerts_severity").set_value("critical").run()
    assert [b.key for b in at.button if b.key and b.key.startswith("ack-")] == [
        b.key for b in at.button if b.key and b.key.startswith("ack-") and "thumbnails-memory_usage" in b.key]
    at.selectbox(key="alerts_severity").set_value("All")
    at.selectbox(key="alerts_queue").set_value("reports").run()
    assert len([b for b in at.button if b.key and b.key.startswith("ack-")]) == 2
    assert not at.exception


@pytest.mark.parametrize("page", PAGES)
def test_empty_database_shows_the_empty_state(page, tmp_path, monkeypatch):
    monkeypatch.setenv("QUEUEWATCH_DB_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = _app()
    at.switch_page(page).run()
    assert not at.exception and not at.error
    assert "No snapshots yet" in _texts(at.info)
    assert "queuewatch collect" in _texts(at.info)


def test_unusable_database_shows_an_error_not_a_traceback(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("QUEUEWATCH_DB_URL", f"sqlite:///{blocker / 'sub' / 'q.db'}")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "can't be opened" in _texts(at.error)


def test_login_is_required_and_checked(seeded_url):
    _ensure_user(seeded_url, "ops@example.com", "ADMIN")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and not at.metric, "nothing is shown before logging in"
    _log_in(at, "ops@example.com", "wrong password")
    assert "Wrong email or password." in _texts(at.error) and not at.metric
    _log_in(at, "OPS@example.com")
    assert not at.exception and _metrics(at)["Queues"] == "5"
    assert "Signed in as ops@example.com (ADMIN)" in _texts(at.text)


@pytest.mark.parametrize("page", PAGES)
def test_a_page_run_on_its_own_needs_a_session(seeded_url, page):
    at = AppTest.from_file(str(REPO_ROOT / page), default_timeout=60).run()
    assert not at.exception and not at.metric and not _charts(at)
    assert "Please log in to continue." in _texts(at.warning)


def test_non_admins_are_refused(seeded_url):
    at = _app("viewer@example.com", "VIEWER")
    assert "Admin access required" in _texts(at.error)
    assert not at.metric


def test_sessions_expire(seeded_url, monkeypatch):
    monkeypatch.setenv("QUEUEWATCH_SESSION_TTL_S", "1")
    at = _app()
    assert _metrics(at)["Queues"] == "5"
    time.sleep(1.5)
    at.run()
    assert "Your session expired. Please log in again." in _texts(at.info) and not at.metric


def test_an_empty_user_table_explains_how_to_add_one(tmp_path, monkeypatch):
    monkeypatch.setenv("QUEUEWATCH_DB_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "queuewatch users add EMAIL --role ADMIN" in _texts(at.info)


def test_overview_filters_by_library_and_shows_na(seeded_url):
    at = _app()
    shown = _shown(at.dataframe[0]).set_index("Queue")
    assert shown.loc["celery", "Failed"] == "n/a" and shown.loc["celery", "Jobs/min"] == "n/a"
    assert shown.loc["celery", "p95 (ms)"] == "n/a" and shown.loc["celery", "Waiting"] != "n/a"
    assert shown.loc["emails", "Failed"] == 0 and shown.loc["thumbnails", "Error %"] == 10.0
    at.multiselect(key="overview_libraries").set_value(["celery", "bullmq"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["Queue"].tolist() == ["celery", "notifications"]
    assert pd.isna(table.set_index("Queue").loc["celery", "Error %"])
    assert _metrics(at)["Queues"] == "5"  # the summary tiles count every library
    at.multiselect(key="overview_libraries").set_value([]).run()
    assert len(at.dataframe[0].value) == 5


def test_queue_detail_of_a_bullmq_queue(seeded_url):
    at = _app()
    at.switch_page("pages/queue_detail.py").run()
    at.selectbox(key="queue_detail_queue").set_value("notifications · bullmq").run()
    assert not at.exception
    assert ":orange-badge[:material/pause_circle: Paused]" in _texts(at.markdown)
    metrics = _metrics(at)
    assert metrics["Stalled"] == "1" and metrics["Throughput source"] == "metrics"
    assert metrics["Worker memory"] == "420 MB" and metrics["Jobs/min"] == "36.0"  # from the memory agent
    figures = _figures(at)
    assert len(figures) == 7
    tiers = figures["Waiting jobs by priority"]["data"][0]
    assert tiers["x"] == ["Critical (1)", "High (3)", "Normal (5)", "Low (7)", "Background (10)"]
    assert tiers["y"][:2] == [2, 5] and tiers["y"][3:] == [4, 9]
    assert sum(tiers["y"]) == int(metrics["Waiting"])
    assert "BullMQ records no worker pids" not in _texts(at.caption)  # its agent measured the memory


def test_queue_detail_of_a_celery_queue_says_what_is_not_measured(seeded_url):
    at = _app()
    at.switch_page("pages/queue_detail.py").run()
    at.selectbox(key="queue_detail_queue").set_value("celery · celery").run()
    assert not at.exception and "Paused" not in _texts(at.markdown)
    metrics = _metrics(at)
    for label in ("Failed", "Completed", "Jobs/min", "Error rate", "Timeout rate", "Jobs timed",
                  "Processing p95"):
        assert metrics[label] == "n/a", label
    assert metrics["Waiting"] not in ("n/a", "0") and metrics["Delayed"] == "2"
    note = _texts(at.info)
    assert "Celery keeps no per-queue store" in note and "`-E`" in note and "docs/celery.md" in note
    figures = _figures(at)
    assert [t["name"] for t in figures["Queue depth"]["data"]] == ["Waiting", "Active", "Delayed"]
    for title in ("Throughput", "Error and timeout rates", "Processing time", "Execution time distribution"):
        assert figures[title]["data"] == [], title
        assert [a["text"] for a in figures[title]["layout"]["annotations"]] == [charts.NOT_MEASURED]
    captions = _texts(at.caption)
    assert "Not drawn, never measured in this range. Failed: Celery keeps no" in captions
    assert "Jobs/min, error rate, timeout rate, processing time (p50, p95, p99): no task events" in captions
    assert "docs/celery.md" in captions


def test_workers_show_library_memory_source_and_na(seeded_url):
    at = _app()
    at.switch_page("pages/workers.py").run()
    table = at.dataframe[0].value.set_index("Worker")
    assert table.loc["bull-worker-1", "Library"] == "bullmq"
    assert table.loc["bull-worker-1", "Memory source"] == "agent"
    assert table.loc["worker-emails-1", "Memory source"] == "psutil"
    assert table.loc["celery@worker-3", "Memory source"] == "n/a"
    shown = _shown(at.dataframe[0]).set_index("Worker")
    assert shown.loc["celery@worker-3", "RSS (MB)"] == shown.loc["worker-old-1", "RSS (MB)"] == "n/a"
    assert shown.loc["bull-worker-1", "RSS (MB)"] == 420.0
    at.multiselect(key="workers_libraries").set_value(["celery"]).run()
    assert not at.exception
    assert at.dataframe[0].value["Worker"].tolist() == ["celery@worker-3"]
    assert "No worker memory measured in this range" in _texts(at.info)  # unknown memory is not drawn as 0
    assert _metrics(at)["Workers reporting"] == "6"


def test_export_filters_by_library(seeded_url):
    at = _app()
    at.switch_page("pages/export.py").run()
    everything = _metrics(at)
    at.multiselect(key="export_libraries").set_value(["celery"]).run()
    assert not at.exception
    metrics = _metrics(at)
    assert metrics["Alerts"] == "0" and 0 < int(metrics["Queue snapshots"].replace(",", "")) < int(
        everything["Queue snapshots"].replace(",", ""))
    preview = at.dataframe[0].value
    assert set(preview["library"]) == {"celery"} and preview["failed"].isna().all()


def _leaking_worker(db_url: str, now_s: float) -> None:
    """Two hours of a worker whose RSS climbs from 200 MB to 560 MB while its job count stays flat."""
    engine = make_engine(db_url)
    for i in range(121):
        at_s = now_s - 7200 + i * 60
        row = {"sampled_at_s": at_s, "worker_name": "leaky-1", "library": "rq", "queues": "emails",
               "pid": 4242, "hostname": "worker-host-1", "state": "idle", "alive": True, "jobs_processed": 10,
               "successful_jobs": 10, "failed_jobs": 0, "birth_at_s": now_s - 3 * 3600,
               "last_heartbeat_at_s": at_s, "memory_source": "psutil", "rss_mb": 200 + 3 * i,
               "should_recycle": False}
        write_cycle(engine, CycleRecord(at_s, at_s, 0, [], [row]), lambda open_rows: [])
    engine.dispose()


def test_workers_page_shows_leak_hints(seeded_url):
    _leaking_worker(seeded_url, time.time())
    at = _app()
    at.switch_page("pages/workers.py").run()
    assert not at.exception
    warnings = _texts(at.warning)
    assert "leaky-1 (rq)" in _texts(at.text)
    assert "RSS grew" in _unescaped(warnings) and "while jobs stayed flat" in _unescaped(warnings)
    assert "rq worker --max-idle-time" in _texts(at.markdown) or "rq worker --max-jobs" in _texts(at.markdown)


def test_workers_page_without_leaks_says_so(seeded_url):
    at = _app()
    at.switch_page("pages/workers.py").run()
    assert "No leak hints" in _texts(at.caption)
