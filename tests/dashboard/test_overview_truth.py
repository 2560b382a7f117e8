"""The overview tells the truth about the whole system: its own totals, stale and paused queues, idle backlogs."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from storage.engine import make_engine
from storage.queries import latest_snapshot
from storage.schema import queue_snapshots
from storage.writer import CycleRecord, write_cycle
from tests.dashboard.test_pages import _app, _metrics, _shown


def _report_only(engine, library: str, names: list[str], step_s: float = 10.0) -> float:
    """One more cycle in which `library` reports only `names` (the others are no longer seen)."""
    rows = []
    at_s = None
    for name in names:
        row = latest_snapshot(engine, name, library=library)
        at_s = float(row["sampled_at_s"]) + step_s
        rows.append({k: v for k, v in row.items() if k not in ("id", "cycle_id")} | {"sampled_at_s": at_s})
    write_cycle(engine, CycleRecord(at_s - 0.5, at_s, 2, rows), lambda open_rows: [])
    return at_s


def test_stale_paused_and_system_figures_on_the_overview(seeded_url):
    engine = make_engine(seeded_url)
    _report_only(engine, "rq", ["emails", "reports"])  # RQ no longer reports `thumbnails`
    with engine.connect() as conn:
        snapshots = pd.DataFrame(conn.execute(select(queue_snapshots)).mappings().all())
    newest = snapshots.sort_values("sampled_at_s").groupby(["library", "queue_name"]).tail(1)
    current = newest[~((newest["library"] == "rq") & (newest["queue_name"] == "thumbnails"))]
    window = snapshots[snapshots["sampled_at_s"] > snapshots["sampled_at_s"].max() - 300]
    ended = int((window["finished_delta"] + window["failed_delta"]).sum())
    expected_error_pct = window["failed_delta"].sum() / ended * 100
    measured = current[~current["unavailable"].fillna("").str.contains("jobsPerMinute")]
    expected_per_minute = measured["jobs_per_minute"].sum()

    at = _app()
    assert not at.exception
    metrics = _metrics(at)
    assert metrics["All jobs/min"] == f"{expected_per_minute:,.1f}"
    assert metrics["Error rate, all jobs"] == f"{expected_error_pct:.2f}%"
    assert metrics["Avg error rate"] != metrics["Error rate, all jobs"]  # the spec's mean over queues differs
    table = _shown(at.dataframe[0]).set_index(["Queue", "Library"])
    stale = table.loc[("thumbnails", "rq")]
    assert stale["Status"] == "stale" and stale["Issues"].startswith("Not reported by rq since ")
    assert stale["Waiting"] == "n/a" and stale["Jobs/min"] == "n/a"  # its last figures are not shown as now
    assert table.loc[("emails", "rq"), "Status"] != "stale"
    assert table.loc[("notifications", "bullmq"), "Issues"].startswith("Paused")
    assert metrics["Queues"] == str(len(current))


def test_a_stale_queue_says_so_on_queue_detail(seeded_url):
    engine = make_engine(seeded_url)
    _report_only(engine, "rq", ["emails", "reports"])
    at = _app()
    at.switch_page("pages/queue_detail.py").run()
    at.selectbox(key="queue_detail_queue").set_value("thumbnails · rq").run()
    assert not at.exception
    assert any("Not reported by RQ since" in w.value and "not current" in w.value for w in at.warning)
    at.selectbox(key="queue_detail_queue").set_value("emails · rq").run()
    assert not any("Not reported" in w.value for w in at.warning)
