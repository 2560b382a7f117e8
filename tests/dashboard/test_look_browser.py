"""How the dashboard reads in real Chromium at 1440 x 900: every table column visible, markers for a queue's
two points in 7 days, the hover count of a point that a real worker's jobs made, the previous-week overlay,
one time axis per page, the range kept in the URL across a reload, and the dark theme; screenshots of every
page in both themes go to $QUEUEWATCH_SCREENSHOTS (build/screenshots/ by default, outside git)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from accounts.accounts import add_user
from storage.engine import make_engine
from tests.collector.test_first_cycle import _collector, _run_jobs
from tests.conftest import REPO_ROOT
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, _log_in, dashboard_server
from tests.dashboard.test_look import WEEK_S, _store
from tests.seed import seed_database

ADMIN = "look-ops@example.com"
VIEWPORT = {"width": 1440, "height": 900}
SHOTS = Path(os.environ.get("QUEUEWATCH_SCREENSHOTS") or REPO_ROOT / "build" / "screenshots")
PAGES = (("overview", "/", "Queue overview"),
         ("queue-detail", "/queue?queue=thumbnails&library=rq&range=1h&compare=week", "Queue detail"),
         ("workers", "/memory", "Workers & memory"),
         ("alerts", "/alert-history", "Alerts"),
         ("export", "/csv-export", "Export"))
# Header labels of each page's tables, in order (every one must be on screen).
TABLES = {
    "/": [["Status", "Queue", "Lib", "Issues", "Waiting, 1 h", "Waiting", "Active", "Delayed", "Failed",
           "Jobs/min", "Error %", "Tmout %", "p95 (ms)", "Oldest wait s", "Seen s ago"]],
    "/memory": [["Worker", "Lib", "State", "RSS (MB)", "Recycle?", "Recycle reason", "Queues", "Host", "PID",
                 "Jobs", "Mem. src", "Started (UTC)", "Heartbeat (UTC)"]],
    "/alert-history": [["Severity", "State", "Queue", "Message", "Type", "Value", "Thresh.", "Opened (UTC)",
                        "Resolved (UTC)", "Ack. by", "Ack. at (UTC)", "Silence"]],
}
TIME_CHARTS = ("Queue depth", "Throughput", "Error and timeout rates", "Processing time",
               "Wait time (enqueued → started)")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")]

# Each shown table: its box, its grid's scroll and client widths, and the header cells the grid rendered
# (the grid renders only the columns inside its visible area).
TABLE_GEOMETRY = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'))
  .filter(d => d.getBoundingClientRect().width > 0 && d.querySelector('.dvn-scroller'))
  .map(d => { const s = d.querySelector('.dvn-scroller'); const box = d.getBoundingClientRect();
              return {left: box.left, right: box.right, scrollWidth: s.scrollWidth, clientWidth: s.clientWidth,
                      heads: Array.from(d.querySelectorAll('th')).map(t => t.textContent)}; })"""
PLOT = """(title) => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .find(p => (p.querySelector('.gtitle') || {}).textContent === title)"""
LUMINANCE = """(colour) => { const [r, g, b] = (colour.match(/[\\d.]+/g) || []).map(Number);
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }"""


LIVE_JOBS = 27  # what tests.collector.test_first_cycle._run_jobs enqueues and a real RQ worker runs


@pytest.fixture(scope="module")
def look_dashboard(tmp_path_factory, redis_server):
    """The dashboard over a history written through the real write path: a real collector cycle over a queue
    whose jobs a real RQ worker ran, the seed's last hour, the thumbnails queue one week earlier, and a queue
    with two snapshots in the last 7 days."""
    folder = tmp_path_factory.mktemp("look")
    db_url, log = f"sqlite:///{folder / 'queuewatch.db'}", folder / "streamlit.log"
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    assert len(_run_jobs(client, redis_server, "live")) == LIVE_JOBS
    collector = _collector(redis_server, db_url)
    assert collector.run_cycle().ok
    collector.engine.dispose()
    client.flushall()
    client.close()
    now_s = time.time()
    engine = make_engine(db_url)
    _store(engine, "sparse", now_s - 5 * 86400, 7)
    _store(engine, "sparse", now_s - 2 * 86400, 9)
    seed_database(engine, now_s - WEEK_S, hours=1.0, queues=("thumbnails",))
    seed_database(engine, now_s, hours=1.0)  # last, so that the seed's queues are the current ones
    add_user(engine, ADMIN, "ADMIN", PASSWORD)
    engine.dispose()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with dashboard_server(db_url, log, {"QUEUEWATCH_DB_URL": db_url}) as url:
        yield url, log


def _browser_page(playwright, scheme: str):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    return browser, browser.new_context(viewport=VIEWPORT, color_scheme=scheme).new_page()


def _open(page, url: str, path: str, heading: str) -> None:
    page.goto(url + path)
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=30_000)
    page.wait_for_timeout(2_500)  # the page's first fragment runs and charts draw
    assert page.locator('[data-testid="stException"]').count() == 0


def _charts_drawn(page, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {count}",
                           timeout=60_000)
    page.wait_for_timeout(1_000)


def _screenshot(page, name: str) -> Path:
    """The whole page (the viewport stretched to the app's height for the shot), under SHOTS."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height))})
    page.wait_for_timeout(1_500)
    path = SHOTS / f"queuewatch-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    page.wait_for_timeout(500)
    return path


def _every_column_visible(page, path: str) -> None:
    page.wait_for_function(f"() => {{ const t = ({TABLE_GEOMETRY})(); "
                           f"return t.length >= {len(TABLES[path])} && t.every(x => x.heads.length > 0); }}",
                           timeout=30_000)
    tables = page.evaluate(TABLE_GEOMETRY)
    assert [t["heads"] for t in tables] == TABLES[path], tables
    for table in tables:
        assert table["scrollWidth"] <= table["clientWidth"], table  # nothing to scroll to sideways
        assert table["left"] >= 0 and table["right"] <= VIEWPORT["width"], table


def _single_points_are_marked(page, url: str) -> None:
    _open(page, url, "/queue?queue=sparse&library=rq&range=7d", "Queue detail")
    _charts_drawn(page, 6)
    markers = page.evaluate(f"""() => {{ const plot = ({PLOT})('Queue depth');
      const waiting = plot.querySelectorAll('.scatterlayer .trace')[0];
      return Array.from(waiting.querySelectorAll('.points path'))
        .map(p => p.getBoundingClientRect()).filter(b => b.width > 0 && b.height > 0).length; }}""")
    assert markers == 2


def _hover_counts_the_real_jobs(page, url: str) -> None:
    """The live queue's one point (a real collector cycle after a real worker ran its jobs) is drawn, and
    hovering it says how many jobs ended in it."""
    _open(page, url, "/queue?queue=live&library=rq&range=1h", "Queue detail")
    _charts_drawn(page, 6)
    page.evaluate(f"() => ({PLOT})('Throughput').scrollIntoView({{block: 'center'}})")
    page.wait_for_timeout(500)
    point = page.evaluate(f"""() => {{ const plot = ({PLOT})('Throughput');
      const marks = Array.from(plot.querySelectorAll('.scatterlayer .trace')[0].querySelectorAll('.points path'))
        .map(p => p.getBoundingClientRect()).filter(b => b.width > 0);
      return marks.map(b => ({{x: b.x + b.width / 2, y: b.y + b.height / 2}})); }}""")
    assert len(point) == 1, point
    page.mouse.move(point[0]["x"] + 8, point[0]["y"] + 8)
    page.mouse.move(point[0]["x"], point[0]["y"], steps=4)
    page.wait_for_function(f"() => ({PLOT})('Throughput').querySelector('.hoverlayer').textContent.length > 0",
                           timeout=10_000)
    text = page.evaluate(f"() => ({PLOT})('Throughput').querySelector('.hoverlayer').textContent")
    assert f"{LIVE_JOBS} jobs ended" in text, text


def _range_survives_a_reload(page) -> None:
    page.get_by_text("24 h", exact=True).click()
    page.wait_for_url("**range=24h**", timeout=30_000)
    page.reload()
    page.get_by_role("heading", name="Queue detail", exact=True).wait_for(timeout=30_000)
    page.wait_for_timeout(2_000)
    assert "range=24h" in page.url and "queue=sparse" in page.url
    assert page.get_by_role("radio", name="24 h").is_checked()
    assert not page.get_by_role("radio", name="1 h").is_checked()


def _overlay_and_shared_axis(page, url: str) -> None:
    _open(page, url, PAGES[1][1], "Queue detail")
    _charts_drawn(page, 6)
    overlay = page.evaluate(f"""() => {{ const plot = ({PLOT})('Queue depth');
      const index = plot._fullData.findIndex(t => t.name === 'Waiting, previous week');
      const line = plot.querySelectorAll('.scatterlayer .trace')[index].querySelector('.js-line');
      return {{index, points: plot._fullData[index].y.filter(v => v !== null).length,
               dash: getComputedStyle(line).strokeDasharray}}; }}""")
    assert overlay["index"] == 4 and overlay["points"] >= 10 and overlay["dash"] not in ("", "none"), overlay
    page.evaluate(f"() => ({PLOT})('Queue depth').scrollIntoView({{block: 'center'}})")
    page.wait_for_timeout(500)
    area = page.evaluate(f"""() => {{ const b = ({PLOT})('Queue depth').querySelector('.nsewdrag')
      .getBoundingClientRect(); return {{x: b.x, y: b.y, width: b.width, height: b.height}}; }}""")
    y = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.5, y + 2, steps=8)
    page.mouse.move(area["x"] + area["width"] * 0.6, y + 2, steps=8)
    page.mouse.up()
    page.wait_for_timeout(1_500)
    ranges = page.evaluate(f"""(titles) => titles.map(t => {{ const p = ({PLOT})(t);
      return p.layout.xaxis.range ? p.layout.xaxis.range.map(String) : null; }})""", list(TIME_CHARTS))
    assert ranges[0] is not None and all(r == ranges[0] for r in ranges), ranges
    drawn = page.evaluate(f"""() => {{ const p = ({PLOT})('Queue depth'); const x = p._fullData[0].x;
      return [String(x[0]), String(x[x.length - 1])].map(v => v.replace('T', ' ')); }}""")
    assert drawn[0] < ranges[0][0] < ranges[0][1] < drawn[1], (drawn, ranges)  # zoomed inside the data


def _dark_theme(page, url: str) -> None:
    _open(page, url, PAGES[1][1], "Queue detail")
    _charts_drawn(page, 6)
    colours = page.evaluate(f"""() => {{ const luminance = {LUMINANCE};
      const app = getComputedStyle(document.querySelector('[data-testid="stApp"]')).backgroundColor;
      const plot = ({PLOT})('Queue depth');
      return {{app: luminance(app), paper: luminance(plot._fullLayout.paper_bgcolor),
               svg: luminance(getComputedStyle(plot.querySelector('.main-svg')).backgroundColor),
               text: luminance(plot._fullLayout.font.color)}}; }}""")
    assert colours["app"] < 0.2 and colours["paper"] < 0.2 and colours["svg"] < 0.2, colours
    assert colours["text"] > 0.7, colours


def _run(url: str, log: Path, scheme: str, steps) -> list[Path]:
    from playwright.sync_api import sync_playwright

    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser, page = _browser_page(playwright, scheme)
        try:
            _log_in(page, url, ADMIN)
            page.get_by_role("heading", name="Queue overview").wait_for(timeout=30_000)
            steps(page, url)
            for name, path, heading in PAGES:
                _open(page, url, path, heading)
                if name == "queue-detail":
                    _charts_drawn(page, 6)
                shots.append(_screenshot(page, f"{name}-{scheme}"))
        except Exception:
            page.screenshot(path=str(SHOTS / f"queuewatch-look-{scheme}-failure.png"), full_page=True)
            print("streamlit log:", log.read_text()[-3000:])
            raise
        finally:
            browser.close()
    return shots


def test_light_theme_tables_markers_overlay_axis_and_url(look_dashboard):
    url, log = look_dashboard

    def steps(page, url):
        for path, tables in TABLES.items():
            heading = next(h for _, p, h in PAGES if p == path)
            _open(page, url, path, heading)
            page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
            _every_column_visible(page, path)
        _hover_counts_the_real_jobs(page, url)
        _single_points_are_marked(page, url)
        _range_survives_a_reload(page)
        _overlay_and_shared_axis(page, url)

    shots = _run(url, log, "light", steps)
    assert all(path.stat().st_size > 10_000 for path in shots)


def test_dark_theme_follows_the_browser(look_dashboard):
    url, log = look_dashboard

    def steps(page, url):
        _dark_theme(page, url)
        _open(page, url, "/", "Queue overview")
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
        _every_column_visible(page, "/")

    shots = _run(url, log, "dark", steps)
    assert all(path.stat().st_size > 10_000 for path in shots)
