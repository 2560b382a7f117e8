"""Run `queuewatch demo` for a while and print its alert figures: opened, lifetimes, flaps, notifications.

    python bench/demo_alerts.py --duration 1800 [--config FILE] [--workdir DIR] [--port 8650] [--json]

A loopback HTTP receiver stands in for a webhook channel (`QUEUEWATCH_WEBHOOK_URL`), so "notifications" are
the POSTs the collector really sent. A flap is an alert that opened within `--flap-window` seconds (default
300) after an earlier alert of the same queue and type resolved. Without `--config` the demo uses its own
alert timing (queuewatch/demo/alerts.toml); pass a file with `[alerts]` zeros for the untimed behaviour.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent


class Receiver(ThreadingHTTPServer):
    """Counts the webhook events it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: Counter[str] = Counter()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = str(json.loads(body).get("event", "?"))
        except ValueError:
            event = "unparsable"
        with self.server.lock:
            self.server.events[event] += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def alert_figures(db_url: str, since_s: float, until_s: float, flap_window_s: float) -> dict:
    """Figures of the alerts opened in [since_s, until_s] (system alerts apart)."""
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, queue_name, alert_type, opened_at_s, resolved_at_s FROM alerts "
            "WHERE opened_at_s BETWEEN :a AND :b ORDER BY opened_at_s"), {"a": since_s, "b": until_s}).all()
        events = Counter(dict(conn.execute(sa.text(
            "SELECT event, COUNT(*) FROM alert_events WHERE at_s BETWEEN :a AND :b GROUP BY event"),
            {"a": since_s, "b": until_s}).all()))
    engine.dispose()
    lifetimes_s = [r.resolved_at_s - r.opened_at_s for r in rows if r.resolved_at_s is not None]
    last_resolved: dict[tuple[str, str], float] = {}
    flaps = 0
    for r in rows:
        key = (r.queue_name, r.alert_type)
        if key in last_resolved and r.opened_at_s - last_resolved[key] <= flap_window_s:
            flaps += 1
        if r.resolved_at_s is not None:
            last_resolved[key] = r.resolved_at_s
    return {
        "alerts_opened": len(rows),
        "alerts_resolved": len(lifetimes_s),
        "alerts_still_open": len(rows) - len(lifetimes_s),
        "shortest_lifetime_s": round(min(lifetimes_s), 1) if lifetimes_s else None,
        "median_lifetime_s": round(statistics.median(lifetimes_s), 1) if lifetimes_s else None,
        "lived_under_30s": sum(1 for v in lifetimes_s if v < 30),
        "flaps": flaps,
        "escalations": events.get("escalated", 0),
        "deescalations": events.get("deescalated", 0),
        "by_type": dict(Counter(r.alert_type for r in rows)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of demo (default 1800)")
    parser.add_argument("--config", type=Path, help="TOML file given to the demo (default: the demo's own)")
    parser.add_argument("--workdir", type=Path, help="folder for the demo's data (default: a new temporary one)")
    parser.add_argument("--port", type=int, default=8650, help="dashboard port of the demo (default 8650)")
    parser.add_argument("--flap-window", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="qw-demo-alerts-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'demo.db'}"
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = dict(os.environ, QUEUEWATCH_WEBHOOK_URL=f"http://127.0.0.1:{receiver.server_address[1]}/hook",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("QUEUEWATCH_CONFIG", None)
    argv = [sys.executable, "-m", "queuewatch.cli", "demo", "--db", db_url, "--port", str(args.port),
            "--duration", f"{args.duration:g}"]
    if args.config:
        argv += ["--config", str(args.config.resolve())]
    started_s = time.time()
    with open(workdir / "demo.out", "wb") as out:
        code = subprocess.run(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=args.duration + 300).returncode
    ended_s = time.time()
    time.sleep(2.0)  # the last notifications in flight
    receiver.shutdown()
    figures = alert_figures(db_url, started_s, ended_s, args.flap_window)
    figures.update(notifications_sent=sum(receiver.events.values()), notifications=dict(receiver.events),
                   duration_s=round(ended_s - started_s), demo_exit_code=code,
                   config=str(args.config) if args.config else "queuewatch/demo/alerts.toml", workdir=str(workdir))
    if not args.json:
        for key, value in figures.items():
            print(f"{key}: {value}")
    print(json.dumps(figures))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
