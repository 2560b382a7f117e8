"""CPU of the dashboard server per viewer: Queue detail at 7 days, one real Chromium viewer, the bench database.

    .venv/bin/python bench/bench_dashboard_cpu.py [--db PATH] [--minutes 1] [--range "7 d"]

Run bench/bench_history.py first. Starts `queuewatch dashboard` on loopback over its database (adding an admin
user), stores a cycle every 10 s as a running collector would (bench_api_load.collect_cycle), opens Queue
detail of the chart queue at "7 d" in headless Chromium (/usr/bin/chromium) and, once its charts are drawn,
counts the Streamlit server process's CPU seconds (user + system, psutil) over `--minutes`. The last line
printed is one JSON object: cpu_s_per_min and cpu_pct_of_core.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accounts.accounts import add_user  # noqa: E402
from bench.bench_api_load import DEFAULT_DB, _collect_until, _free_port, collect_cycle  # noqa: E402
from storage.engine import make_engine  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "a long bench password"
QUEUE = "queue-0000"


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the dashboard exited during start-up")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the dashboard did not start in time")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    total = times.user + times.system
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(db: Path, minutes: float, range_label: str = "7 d") -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    db_url = f"sqlite:///{db}"
    engine = make_engine(db_url)
    email = f"viewer-{int(time.time())}@example.com"
    add_user(engine, email, "ADMIN", PASSWORD)
    collect_cycle(engine)
    stop = threading.Event()
    collector = threading.Thread(target=_collect_until, args=(engine, stop), daemon=True)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "dashboard", "--db", db_url, "--port",
                               str(port)], env={**os.environ, "QUEUEWATCH_DB_URL": db_url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    figures: dict[str, object] = {"range": range_label, "queue": QUEUE, "minutes": minutes}
    try:
        _wait_healthy(url, server)
        collector.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1500, "height": 2700}).new_page()
            page.goto(url)
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Queue overview").wait_for(timeout=60_000)
            page.goto(f"{url}/queue?queue={QUEUE}&library=rq")
            page.get_by_text(range_label, exact=True).click()
            page.get_by_text("points of").first.wait_for(timeout=180_000)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 6",
                                   timeout=180_000)
            page.wait_for_timeout(15_000)  # the range's first read is over; refreshes run from here on
            process = psutil.Process(server.pid)
            started_cpu_s, started_s = _cpu_s(process), time.monotonic()
            page.wait_for_timeout(int(minutes * 60_000))
            cpu_s, elapsed_s = _cpu_s(process) - started_cpu_s, time.monotonic() - started_s
            figures["points_caption"] = page.get_by_text("points of").first.inner_text()[:120]
            browser.close()
        figures["cpu_s_per_min"] = round(cpu_s / elapsed_s * 60.0, 2)
        figures["cpu_pct_of_core"] = round(cpu_s / elapsed_s * 100.0, 2)
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        collector.join(30)
        engine.dispose()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="bench database (from bench_history.py)")
    parser.add_argument("--minutes", type=float, default=1.0, help="how long the CPU is counted")
    parser.add_argument("--range", default="7 d", choices=("1 h", "6 h", "24 h", "7 d"), help="range shown")
    args = parser.parse_args()
    if not args.db.exists():
        print(f"{args.db} not found: run bench/bench_history.py first", file=sys.stderr)
        return 2
    print(json.dumps(measure(args.db, args.minutes, args.range)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
