"""The overview's "Unusual for this hour of the week" table over a real SQLite history (AppTest)."""
from __future__ import annotations

import time

from storage.engine import make_engine
from tests.dashboard.test_pages import _app
from tests.storage.test_baseline_history import USUAL_WAITING, _row, _write


def test_overview_lists_the_spiking_queue_worst_first(tmp_path, monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("QUEUEWATCH_DB_URL", db_url)
    engine = make_engine(db_url)
    now_s = time.time()
    for day, waiting in enumerate(USUAL_WAITING, start=1):
        at_s = now_s - day * 86400
        _write(engine, at_s, [_row("spiky", at_s, waiting), _row("steady", at_s, waiting),
                              _row("slow", at_s, waiting, run_ms=200.0 + 10 * (day % 5))])
    _write(engine, now_s, [_row("spiky", now_s, 5000), _row("steady", now_s, 104),
                           _row("slow", now_s, 101, run_ms=3000.0)])
    engine.dispose()

    at = _app()
    assert not at.exception
    assert "Unusual for this hour of the week" in [h.value for h in at.subheader]
    table = next(frame.value for frame in at.dataframe if "How far" in frame.value.columns)
    assert list(table["Queue"]) == ["spiky", "slow"]  # worst first; steady is within its usual spread
    assert list(table["Figure"]) == ["depth", "p95 processing"]
    assert table.iloc[0]["Now"] == "5,000" and table.iloc[0]["Usual"] == "100.50"
    assert table.iloc[0]["Based on"] == "14 days"
