"""Queue detail's charts update in place in real Chromium: across refreshes with new data the chart DOM nodes
persist and no chart slot is ever empty (sampled every 100 ms)."""
from __future__ import annotations

import threading
import time

import pytest

from accounts.accounts import add_user
from storage.engine import make_engine
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, SCREENSHOTS, _log_in, dashboard_server
from tests.seed import write_seed_file
from tests.storage.test_writer import _cycle

ADMIN = "charts-ops@example.com"
CHARTS = 6
REFRESH_S = 10.0
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")]

# Every 100 ms: how many charts are drawn (a plot with its SVG and at least one trace), whether every chart
# node is one marked at the start, and the depth chart's point count and x range (they move with new data).
SAMPLER = """() => {
  window.__qwSamples = [];
  const marked = Array.from(document.querySelectorAll('.js-plotly-plot'));
  marked.forEach((node, index) => { node.__qwMark = index; });
  window.__qwMarked = marked;
  window.__qwTimer = setInterval(() => {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const drawn = plots.filter(p => p.querySelector('.main-svg') && p.data && p.data.length > 0
                                    && p.getBoundingClientRect().height > 0);
    const depth = plots.find(p => (p.querySelector('.gtitle') || {}).textContent === 'Queue depth');
    const full = depth && depth._fullLayout && depth._fullData && depth._fullData[0];
    window.__qwSamples.push({
      plots: plots.length, drawn: drawn.length,
      allMarked: plots.every(p => p.__qwMark !== undefined),
      unmarked: plots.filter(p => p.__qwMark === undefined)
                     .map(p => (p.querySelector('.gtitle') || {}).textContent || '?').join(','),
      markedConnected: window.__qwMarked.every(p => p.isConnected),
      lastX: full ? `${full._length}|${depth._fullLayout.xaxis.range}` : null,
    });
  }, 100);
}"""


@pytest.fixture(scope="module")
def live_dashboard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live-charts")
    db_path, log = folder / "queuewatch.db", folder / "streamlit.log"
    write_seed_file(db_path, time.time(), hours=1.0)
    db_url = f"sqlite:///{db_path}"
    engine = make_engine(db_url)
    add_user(engine, ADMIN, "ADMIN", PASSWORD)
    try:
        with dashboard_server(db_url, log, {"QUEUEWATCH_DB_URL": db_url}) as url:
            yield url, engine, log
    finally:
        engine.dispose()


def _collect(engine, stop: threading.Event) -> None:
    """The collector's part: a new cycle of the charted queue every 2 s, so each refresh draws new data."""
    waiting = 20
    while not stop.wait(2.0):
        waiting += 7
        _cycle(engine, time.time(), thumbnails=waiting)


def test_queue_detail_charts_update_in_place(live_dashboard):
    from playwright.sync_api import sync_playwright

    url, engine, log = live_dashboard
    stop = threading.Event()
    writer = threading.Thread(target=_collect, args=(engine, stop), daemon=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 2700}).new_page()
        try:
            _log_in(page, url, ADMIN)
            page.get_by_role("heading", name="Queue overview").wait_for(timeout=30_000)
            page.goto(f"{url}/queue?queue=thumbnails&library=rq")
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {CHARTS}",
                                   timeout=60_000)
            page.wait_for_timeout(1_000)
            writer.start()
            page.evaluate(SAMPLER)
            page.wait_for_timeout(int(2.3 * REFRESH_S * 1000))
            samples = page.evaluate("() => { clearInterval(window.__qwTimer); return window.__qwSamples; }")
            page.screenshot(path=str(SCREENSHOTS / "queuewatch-live-charts.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "queuewatch-live-charts-failure.png"), full_page=True)
            print("streamlit log:", log.read_text()[-3000:])
            raise
        finally:
            stop.set()
            browser.close()
    writer.join(5)
    assert len(samples) >= 150  # sampled every 100 ms over 23 s (timers may run a little late)
    refreshes = len({s["lastX"] for s in samples}) - 1
    assert refreshes >= 2, f"the depth chart drew new data {refreshes} times: {samples[:2]}"
    print([(i, s["plots"], s["drawn"], s["allMarked"], s["lastX"]) for i, s in enumerate(samples)
           if i == 0 or s != samples[i - 1]])
    empty = [s for s in samples if s["drawn"] < CHARTS or s["plots"] < CHARTS]
    assert not empty, f"{len(empty)} of {len(samples)} samples had an empty chart slot, e.g. {empty[0]}"
    recreated = [s for s in samples if not (s["allMarked"] and s["markedConnected"])]
    assert not recreated, f"chart nodes were re-created in {len(recreated)} samples, e.g. {recreated[-1]}"
