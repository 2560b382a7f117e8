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
