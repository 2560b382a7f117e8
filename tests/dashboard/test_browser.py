from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from accounts.accounts import add_user, issue_token
from storage.engine import make_engine
from storage.schema import alerts
from tests.api.conftest import API, start_api
from tests.conftest import REPO_ROOT, free_port
from tests.seed import write_seed_file

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER = "browser-ops@example.com"
VIEWER = "browser-viewer@example.com"
PASSWORD = "correct horse battery"
SCREENSHOTS = Path(os.environ.get("QUEUEWATCH_SCREENSHOTS", "/tmp"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A real `streamlit run app.py` on a seeded database; yields (base URL, database URL)."""
    folder = tmp_path_factory.mktemp("browser")
    db_path, log = folder / "queuewatch.db", folder / "streamlit.log"
    write_seed_file(db_path, time.time(), hours=1.0)
    db_url = f"sqlite:///{db_path}"
    engine = make_engine(db_url)
    add_user(engine, USER, "ADMIN", PASSWORD)
    add_user(engine, VIEWER, "VIEWER", PASSWORD)
    engine.dispose()
    with dashboard_server(db_url, log, {"QUEUEWATCH_DB_URL": db_url}) as url:
        yield url, db_url, log


@contextmanager
def dashboard_server(db_url: str, log: Path, env: dict[str, str]) -> Iterator[str]:
    """A real `queuewatch dashboard` on a free loopback port (its output in `log`), until the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuewatch.cli", "dashboard", "--db", db_url, "--port", str(port)],
        cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(dashboard):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 2700})
        yield context.new_page()
        browser.close()


def _acknowledged_by(db_url: str) -> list[tuple[str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(alerts.c.id, alerts.c.acknowledged_by).where(alerts.c.acknowledged.is_(True)))]
    finally:
        engine.dispose()


def _assert_acknowledged_through_the_api(db_url: str, alert_id: str) -> None:
    """The admin API (a real server over the same database) reports the alert acknowledged by the user."""
    engine = make_engine(db_url)
    token, _ = issue_token(engine, USER)
    engine.dispose()
    proc, api_url = start_api(db_url, f"redis://127.0.0.1:{free_port()}/0")  # rate limits fall back to local
    try:
        response = httpx.get(api_url + API + "/alerts", params={"acknowledged": "true"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert response.status_code == 200
    alert = next(a for a in response.json() if a["id"] == alert_id)
    assert alert["acknowledged"] is True and alert["acknowledgedBy"] == USER and "acknowledgedAt" in alert


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def test_dashboard_in_a_real_browser(dashboard, page):
    url, db_url, log = dashboard
    try:
        _walk_through_the_pages(page, url, db_url)
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / "queuewatch-failure.png"), full_page=True)
        print("page text:", page.inner_text("body")[:3000])
        print("streamlit log:", log.read_text()[-3000:])
        raise


def _log_in(page, url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def _pick_queue(page, label: str) -> None:
    """Choose a queue ("emails · rq") in the queue detail select."""
    page.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=label).click()


def _walk_through_the_pages(page, url: str, db_url: str) -> None:
    page.goto(url + "/queue")  # no session: only the login page can be reached
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot").count() == 0
    _log_in(page, url, USER, "not the password")
    page.get_by_text("Wrong email or password.").wait_for(timeout=30_000)
    _log_in(page, url, VIEWER)
    page.get_by_text("Admin access required").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    _log_in(page, url, USER)
    page.get_by_role("heading", name="Queue overview").wait_for(timeout=30_000)
    page.get_by_text("Open alerts").first.wait_for(timeout=30_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    page.get_by_text("thumbnails").first.wait_for(state="attached", timeout=30_000)
    page.wait_for_timeout(6_000)  # the summary fragment reruns every 5 s
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-overview.png"), full_page=True)

    page.get_by_role("link", name="Queue detail").click()
    page.get_by_role("heading", name="Queue detail").wait_for(timeout=30_000)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=30_000)
    assert page.locator(".js-plotly-plot").count() >= 6
    page.get_by_text("Not measured for this Celery queue").wait_for(timeout=30_000)  # the first queue's
    page.get_by_text("Not measured for this queue").first.wait_for(timeout=30_000)
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-queue-detail-celery.png"), full_page=True)
    _pick_queue(page, "notifications · bullmq")
    page.get_by_text("Waiting jobs by priority").wait_for(timeout=30_000)
    page.get_by_text("Paused").first.wait_for(timeout=30_000)
    page.get_by_text("Background (10)").wait_for(timeout=30_000)
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-queue-detail-bullmq.png"), full_page=True)
    _pick_queue(page, "thumbnails · rq")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 6", timeout=30_000)
    page.get_by_text("Execution time distribution").wait_for(timeout=30_000)
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-queue-detail.png"), full_page=True)

    page.get_by_role("link", name="Workers & memory").click()
    page.get_by_role("heading", name="Workers & memory").wait_for(timeout=30_000)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-workers.png"), full_page=True)

    page.get_by_role("link", name="Alerts").click()
    page.get_by_role("heading", name="Alerts", exact=True).wait_for(timeout=30_000)
    buttons = page.get_by_role("button", name="Acknowledge", exact=True)
    buttons.first.wait_for(timeout=30_000)
    assert buttons.count() == 5
    assert page.get_by_role("button", name="Acknowledge all 5 shown").count() == 1
    assert _acknowledged_by(db_url) == []
    buttons.first.click()
    deadline = time.monotonic() + 20
    while not _acknowledged_by(db_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    acknowledged = _acknowledged_by(db_url)
    assert len(acknowledged) == 1 and acknowledged[0][1] == USER
    _assert_acknowledged_through_the_api(db_url, acknowledged[0][0])
    assert "thumbnails-memory_usage" in acknowledged[0][0]  # critical alerts come first
    page.get_by_text(f"by {USER}").first.wait_for(timeout=20_000)
    page.wait_for_timeout(4_000)  # the history fragment reruns every 3 s
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-alerts.png"), full_page=True)

    page.get_by_role("link", name="Export").click()
    page.get_by_role("button", name="Snapshots CSV").wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Snapshots CSV").click()
    header = Path(download.value.path()).read_text().splitlines()[0]
    assert header.startswith("queueName,waiting,active,delayed,failed,completed,jobsPerMinute")
    _no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-export.png"), full_page=True)

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    page.goto(url + "/alert-history")
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Acknowledge", exact=True).count() == 0
