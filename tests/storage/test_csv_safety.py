"""CSV exports are safe to open in a spreadsheet: text cells that would start a formula get a leading quote."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import time

import pandas as pd
import pytest
import redis
from rq import Queue

from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage.engine import make_engine
from storage.queries_export import export_csv_text, spreadsheet_safe
from tests.collector import rq_jobs
from tests.collector.test_rq_reader import _rq_command, _worker_env
from tests.conftest import REPO_ROOT

DANGEROUS = ['=HYPERLINK("http://127.0.0.1/x")', "+1", "-cmd", "@x", "\tx", "\rx"]
WORKER_NAME = "@ops-worker"  # RQ refuses '=' in worker names


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.fixture
def dangerous_site(redis_url, tmp_path):
    """Real RQ queues and a live worker with formula-like names, collected twice with alerts on every queue."""
    client = redis.Redis.from_url(redis_url)
    config = tmp_path / "qw.toml"
    config.write_text("[thresholds]\nqueue_depth_warning = 0\nqueue_depth_critical = 1000\n")
    db_url = f"sqlite:///{tmp_path / 'q.db'}"
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, config_path=str(config))
    for name in DANGEROUS:
        queue = Queue(name, connection=client)
        queue.enqueue(rq_jobs.fail, "-2+3")
        queue.enqueue(rq_jobs.noop)
    subprocess.run(_rq_command(redis_url, "--", *DANGEROUS), cwd=REPO_ROOT, env=_worker_env(), check=True,
                   timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # `--`: names like -cmd
    for name in DANGEROUS:
        Queue(name, connection=client).enqueue(rq_jobs.noop)  # waiting, so a queue_depth alert opens
    worker = subprocess.Popen([*_rq_command(redis_url, "idle-queue", burst=False), f"--name={WORKER_NAME}"],
                              cwd=REPO_ROOT, env=_worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not client.smembers("rq:workers"):
            assert time.monotonic() < deadline and worker.poll() is None, "worker did not register"
            time.sleep(0.1)
        collector = Collector(settings, make_engine(db_url), RQReader(client, settle_s=0))
        assert collector.run_cycle().ok and collector.run_cycle().ok
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    yield db_url


def _cli_export(db_url: str, kind: str) -> str:
    result = subprocess.run([sys.executable, "-m", "queuewatch.cli", "export", "--db", db_url, "--kind", kind,
                             "--out", "-"], cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()  # bytes: text mode would turn a quoted CR into LF


@pytest.mark.parametrize("path", ["cli", "dashboard"])
def test_formula_like_names_are_quoted_in_every_export(dangerous_site, path):
    engine = make_engine(dangerous_site)
    now_s = time.time()

    def export(kind: str) -> list[dict[str, str]]:
        if path == "cli":
            return _rows(_cli_export(dangerous_site, kind))
        return _rows(export_csv_text(engine, kind=kind, since_s=now_s - 3600, until_s=now_s + 60))

    expected = {"'" + name for name in DANGEROUS}
    snapshots = export("snapshots")
    assert {row["queueName"] for row in snapshots} == expected
    assert all(row["waiting"] == "1" for row in snapshots)  # numbers stay numbers
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in snapshots for cell in row.values())
    workers = export("workers")
    assert {row["workerId"] for row in workers} == {"'" + WORKER_NAME}
    alerts = export("alerts")
    assert {row["queueName"] for row in alerts} == expected
    depth = [row for row in alerts if row["type"] == "queue_depth"]  # error rate too: 1 failed of 2 ended
    assert {row["queueName"] for row in depth} == expected and all(float(row["value"]) == 1.0 for row in depth)


def test_negative_numbers_stay_numeric_and_only_text_is_quoted():
    rows = pd.DataFrame({"name": ["-cmd", "ok", None, "=1+2"], "delta": [-1.5, 2.0, -3.0, None],
                         "count": [-1, 0, 1, 2]})
    text = spreadsheet_safe(rows).to_csv(index=False)
    assert _rows(text) == [
        {"name": "'-cmd", "delta": "-1.5", "count": "-1"}, {"name": "ok", "delta": "2.0", "count": "0"},
        {"name": "", "delta": "-3.0", "count": "1"}, {"name": "'=1+2", "delta": "", "count": "2"}]
    assert rows["name"].tolist()[0] == "-cmd"  # the caller's frame is left as it was
