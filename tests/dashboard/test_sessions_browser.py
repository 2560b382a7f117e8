"""Sessions, lockout and plain-text rendering in real Chromium against a real `queuewatch dashboard`."""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select, text

from accounts.accounts import add_user
from storage.engine import make_engine
from storage.schema import alerts, dashboard_sessions
from storage.users import update_user
from tests.conftest import free_port
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, SCREENSHOTS, dashboard_server
from tests.seed import write_seed_file

TTL_S = 10.0
LOCKOUT_S = 3.0
ADMIN = "sessions-ops@example.com"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")]


def _hostile(port: int) -> dict[str, str]:
    """Names a queue, worker or alert could carry: markdown, an image to a closed port, HTML, a link."""
    return {"emails": "**x**", "reports": f"![i](http://127.0.0.1:{port}/x)",
            "thumbnails": "<img src=x onerror=alert(1)>", "celery": "[link](http://127.0.0.1:1/)"}


def _seed_hostile_names(db_url: str, names: dict[str, str], closed_port: int) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        for old, new in names.items():
            conn.execute(text("UPDATE series SET queue_name = :new WHERE queue_name = :old"),
                         {"new": new, "old": old})
            conn.execute(text("UPDATE alerts SET queue_name = :new, message = :new || ' ' || message "
                              "WHERE queue_name = :old"), {"new": new, "old": old})
        conn.execute(text("UPDATE worker_snapshots SET worker_name = :new "
                          "WHERE worker_name = 'worker-emails-1'"), {"new": '<a href="http://127.0.0.1:1/">w</a>'})
        conn.execute(text("UPDATE worker_snapshots SET hostname = :new WHERE worker_name = 'bull-worker-1'"),
                     {"new": f"![h](http://127.0.0.1:{closed_port}/h)"})
        opened_at_s = time.time() - 60
        conn.execute(alerts.insert().values(
            id=f"alert-![i](http://127.0.0.1:{closed_port}/id)", queue_name="**x**", alert_type="queue_depth",
            severity="warning", message="[link](http://127.0.0.1:1/) <img src=x onerror=alert(1)>", value=300,
            threshold=200, opened_at_s=opened_at_s, updated_at_s=opened_at_s, acknowledged=False))
    engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real dashboard with a short idle TTL and lock-out on a seeded database with hostile names."""
    folder = tmp_path_factory.mktemp("sessions")
    db_path, log = folder / "queuewatch.db", folder / "streamlit.log"
    write_seed_file(db_path, time.time(), hours=1.0)
    db_url = f"sqlite:///{db_path}"
    closed_port = free_port()
    _seed_hostile_names(db_url, _hostile(closed_port), closed_port)
    engine = make_engine(db_url)
    for email in (ADMIN, "demoted@example.com", "disabled@example.com", "locked@example.com",
                  "other@example.com"):
        add_user(engine, email, "ADMIN", PASSWORD)
    engine.dispose()
    env = {"QUEUEWATCH_SESSION_TTL_S": str(TTL_S), "QUEUEWATCH_LOGIN_LOCKOUT_S": str(LOCKOUT_S)}
    with dashboard_server(db_url, log, env) as url:
        yield {"url": url, "db_url": db_url, "log": log, "closed_port": closed_port}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    yield context
    print("streamlit log:", server["log"].read_text()[-2000:])
    context.close()


def _log_in(page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def _session_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == "queuewatch_session"), None)


def _wait_for_cookie(context, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cookie = _session_cookie(context)
        if cookie and cookie["value"]:
            return cookie
        time.sleep(0.1)
    raise AssertionError("the login cookie was not set")


def test_deep_link_reload_new_tab_and_logout(server, context):
    url = server["url"]
    page = context.new_page()
    page.goto(f"{url}/queue?queue=notifications&library=bullmq&range=6h")
    _log_in(page, ADMIN)
    page.get_by_role("heading", name="Queue detail").wait_for(timeout=30_000)
    page.get_by_text("Waiting jobs by priority").wait_for(state="attached", timeout=30_000)  # a BullMQ queue
    assert page.get_by_role("radio", name="6 h").is_checked()  # and range
    assert "queue=notifications" in page.url and "/queue" in page.url
    cookie = _wait_for_cookie(context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["expires"] > time.time() + 3600  # the session's absolute lifetime, not a browser session
    assert page.evaluate("document.cookie").find("queuewatch_session") == -1  # hidden from scripts

    page.reload()
    page.get_by_role("heading", name="Queue detail").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Log in").count() == 0
    second = context.new_page()
    second.goto(url + "/alert-history")
    second.get_by_role("heading", name="Alerts", exact=True).wait_for(timeout=30_000)

    copied = dict(cookie)
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    engine = make_engine(server["db_url"])
    with engine.connect() as conn:
        revoked = conn.execute(select(dashboard_sessions.c.revoked_at_s)).scalars().all()
    engine.dispose()
    assert revoked and all(at_s is not None for at_s in revoked), "logging out ends the session on the server"
    second.reload()
    second.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    stranger = context.browser.new_context()
    fields = ("name", "value", "domain", "path", "httpOnly", "sameSite")
    stranger.add_cookies([{k: copied[k] for k in fields}])
    intruder = stranger.new_page()
    intruder.goto(url + "/alert-history")
    intruder.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    assert intruder.get_by_role("button", name="Acknowledge", exact=True).count() == 0
    stranger.close()


def test_an_idle_session_stops_streaming_and_refreshes_do_not_extend_it(server, context):
    page = context.new_page()
    page.goto(server["url"] + "/alert-history")
    _log_in(page, ADMIN)
    page.get_by_role("heading", name="Alerts", exact=True).wait_for(timeout=30_000)
    shown_at_s = time.time()
    expired = page.get_by_text("Your session expired. Please log in again.").first
    expired.wait_for(timeout=(TTL_S + 10) * 1000)  # the fragments rerun every 3 s meanwhile
    seen_at_s = time.time()
    engine = make_engine(server["db_url"])
    with engine.connect() as conn:  # the last activity: the page run after logging in, not the refreshes
        last_seen_s = conn.execute(select(dashboard_sessions.c.last_seen_at_s)
                                   .order_by(dashboard_sessions.c.id.desc()).limit(1)).scalar_one()
    engine.dispose()
    idle_s = seen_at_s - last_seen_s
    print(f"idle expiry seen {idle_s:.1f} s after the last activity (TTL {TTL_S:.0f} s, refresh every 3 s)")
    assert last_seen_s <= shown_at_s
    assert TTL_S - 0.5 <= idle_s <= TTL_S + 5
    # each of the page's two live fragments says so on its next run (every 3 s): the alert cards go then
    page.get_by_role("button", name="Acknowledge", exact=True).first.wait_for(state="detached", timeout=10_000)
    assert page.get_by_role("button", name="Acknowledge", exact=True).count() == 0
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-session-expired.png"), full_page=True)
    page.reload()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)


def _acknowledged(db_url: str) -> list[str]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(alerts.c.id).where(alerts.c.acknowledged.is_(True))).scalars().all()
    engine.dispose()
    return list(rows)


@pytest.mark.parametrize("change,why", [
    ({"role": "VIEWER"}, "Admin access required: your account no longer has the ADMIN role."),
    ({"disabled": True}, "Your account is disabled."),
], ids=["demoted", "disabled"])
def test_a_demoted_or_disabled_user_acknowledges_nothing(server, context, change, why):
    email = "demoted@example.com" if "role" in change else "disabled@example.com"
    page = context.new_page()
    page.goto(server["url"] + "/alert-history")
    _log_in(page, email)
    button = page.get_by_role("button", name="Acknowledge", exact=True).first
    button.wait_for(timeout=30_000)
    before = _acknowledged(server["db_url"])
    engine = make_engine(server["db_url"])
    update_user(engine, email, **change)
    engine.dispose()
    button.click()
    page.get_by_text(why).first.wait_for(timeout=20_000)
    page.get_by_text("Acknowledgement not done.").first.wait_for(timeout=20_000)
    time.sleep(1.0)
    assert _acknowledged(server["db_url"]) == before
    assert page.get_by_role("button", name="Acknowledge", exact=True).count() == 0


def test_data_is_shown_as_plain_text_on_every_page(server, context):
    closed_port = server["closed_port"]
    requests: list[str] = []
    dialogs: list[str] = []
    page = context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server["url"])
    _log_in(page, ADMIN)
    page.get_by_role("heading", name="Queue overview").wait_for(timeout=30_000)
    hostile = list(_hostile(closed_port).values())
    visits = [("/", "Queue overview"), (f"/queue?queue={quote('**x**')}&library=rq", "Queue detail"),
              (f"/queue?queue={quote(hostile[2])}&library=rq", "Queue detail"),
              ("/memory", "Workers & memory"), ("/alert-history", "Alerts"), ("/csv-export", "Export")]
    for path, heading in visits:
        page.goto(server["url"] + path)
        page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=30_000)
        page.wait_for_timeout(2_500)
        _assert_nothing_made_from_data(page, closed_port)
    page.goto(server["url"] + "/alert-history")
    page.get_by_role("button", name="Acknowledge", exact=True).first.wait_for(timeout=30_000)
    body = page.inner_text("body")
    for name in hostile:
        assert name in body, f"{name!r} is not shown literally"
    assert f"alert-![i](http://127.0.0.1:{closed_port}/id)" in body
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-plain-text-alerts.png"), full_page=True)
    page.goto(server["url"] + "/memory")
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1_500)
    legend = page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)")
    assert '<a href="http://127.0.0.1:1/">w</a>' in legend  # the worker's name in the RSS chart, as text
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-plain-text-workers.png"), full_page=True)
    _assert_nothing_made_from_data(page, closed_port)
    reached = [u for u in requests if f":{closed_port}" in u or "127.0.0.1:1/" in u or u.endswith("/x")]
    assert reached == [] and dialogs == []


def _assert_nothing_made_from_data(page, closed_port: int) -> None:
    """No image, link or bold text on the page comes from the hostile names."""
    images = page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src') || '')")
    assert not [src for src in images if src == "x" or str(closed_port) in src]
    links = page.eval_on_selector_all("a, svg a", "els => els.map(e => e.getAttribute('href') || "
                                                  "e.getAttribute('xlink:href') || '')")
    assert not [href for href in links if "127.0.0.1:1/" in href or str(closed_port) in href]
    bold = page.eval_on_selector_all("strong, b", "els => els.map(e => e.textContent)")
    assert "x" not in bold
    assert page.locator('[data-testid="stException"]').count() == 0


def _attempt(page, email: str, password: str = PASSWORD) -> tuple[str, float]:
    """One login through the form: ("in" | "locked" | "wrong", when it was sent, monotonic seconds)."""
    sent_at = time.monotonic()
    _log_in(page, email, password)
    page.wait_for_timeout(800)  # the previous answer stays on screen until this one replaces it
    page.wait_for_function("['Too many failed attempts', 'Wrong email or password.', 'Queue overview']"
                           ".some(t => document.body.innerText.includes(t))", timeout=30_000)
    if page.get_by_role("heading", name="Queue overview").count():
        return "in", sent_at
    return ("locked" if page.get_by_text("Too many failed attempts").count() else "wrong"), sent_at


def _cool_down(page, email: str, locked_at: float) -> tuple[float, float, int]:
    """Right-password attempts until one is let in: (last refusal, success) seconds after `locked_at`."""
    last_refused_s, refused = 0.0, 0
    while time.monotonic() - locked_at < 60:
        outcome, sent_at = _attempt(page, email)
        if outcome == "in":
            return last_refused_s, sent_at - locked_at, refused
        assert outcome == "locked", "the right password is refused with the lockout message"
        last_refused_s, refused = sent_at - locked_at, refused + 1
    raise AssertionError("never let in again")


def test_lockout_after_five_failures_in_the_browser(server, context):
    page = context.new_page()
    page.goto(server["url"])
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    for attempt in range(4):
        assert _attempt(page, "locked@example.com", f"wrong password {attempt}")[0] == "wrong"
    outcome, locked_at = _attempt(page, "locked@example.com", "wrong password 4")
    assert outcome == "locked"
    page.screenshot(path=str(SCREENSHOTS / "queuewatch-lockout.png"), full_page=True)
    last_refused_s, let_in_s, refused = _cool_down(page, "locked@example.com", locked_at)
    print(f"lockout after 5 failures (setting {LOCKOUT_S:.0f} s): {refused} right-password attempts refused, "
          f"the last {last_refused_s:.1f} s after the 5th failure; let in at {let_in_s:.1f} s")
    assert refused >= 2 and last_refused_s < LOCKOUT_S + 1.5  # clicks queue behind reruns on a busy machine
    assert LOCKOUT_S - 0.3 <= let_in_s <= LOCKOUT_S + 2.5
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    # A sixth failure from this address (a success does not reset an address) locks the address for twice as
    # long, for every account.
    outcome, locked_at = _attempt(page, "other@example.com", "wrong again")
    assert outcome == "locked"
    last_refused_s, let_in_s, refused = _cool_down(page, ADMIN, locked_at)
    print(f"address lockout after a 6th failure: {refused} refused, the last at {last_refused_s:.1f} s; "
          f"let in at {let_in_s:.1f} s")
    assert last_refused_s < 2 * LOCKOUT_S + 0.3 and 2 * LOCKOUT_S - 0.3 <= let_in_s <= 2 * LOCKOUT_S + 2.5
    log = Path(server["log"]).read_text()
    assert "login lockout (account): account locked@example.com, address local" in log
    assert "login lockout (address): account other@example.com, address local" in log
    assert "wrong password" not in log and PASSWORD not in log
