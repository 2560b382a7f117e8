from __future__ import annotations

import csv
import time
from datetime import datetime, timezone

from queuewatch.cli import main
from storage.fields import QUEUE_METRICS_FIELDS
from tests.seed import seed_database


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat()


def test_export_writes_spec_columns_for_the_range(engine, db_url, tmp_path, capsys):
    now_s = time.time()
    seed_database(engine, now_s, hours=0.5, queues=["emails", "reports"])
    out = tmp_path / "emails.csv"
    code = main(["export", "--db", db_url, "--queue", "emails", "--since", _iso(now_s - 600),
                 "--until", _iso(now_s + 1), "--out", str(out)])
    assert code == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:len(QUEUE_METRICS_FIELDS)] == [name for name, _ in QUEUE_METRICS_FIELDS]
    assert {r["queueName"] for r in rows} == {"emails"}
    assert 55 <= len(rows) <= 61  # 10-minute range of 10-second snapshots
    assert f"wrote {len(rows)} rows" in capsys.readouterr().err


def test_export_errors_are_clear(engine, db_url, tmp_path, capsys):
    seed_database(engine, time.time(), hours=0.1, queues=["emails"])
    assert main(["export", "--db", db_url, "--queue", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "unknown queue(s): nope" in capsys.readouterr().err
    assert main(["export", "--db", db_url, "--since", "2026-01-02", "--until", "2026-01-01",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()
    for kind in ("workers", "alerts"):
        assert main(["export", "--db", db_url, "--kind", kind, "--out", str(tmp_path / f"{kind}.csv")]) == 0
        assert (tmp_path / f"{kind}.csv").read_text().strip()


def test_dashboard_command_stops_on_sigterm(db_url):
    """`queuewatch dashboard` becomes the Streamlit server, so SIGTERM stops the server itself."""
    import subprocess
    import sys
    import urllib.request

    from tests.conftest import REPO_ROOT, free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "dashboard", "--db", db_url, "--port", str(port)],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    health = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                assert response.status == 200
                break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the dashboard did not start"
            time.sleep(0.3)
    proc.terminate()
    proc.wait(timeout=15)
    try:
        urllib.request.urlopen(health, timeout=2)
        answered = True
    except OSError:
        answered = False
    assert not answered, "a Streamlit server outlived `queuewatch dashboard`"
