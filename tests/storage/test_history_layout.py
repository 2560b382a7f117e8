"""Version 5's layout: rollups equal the snapshots they summarise, reads from rollups equal reads of the
snapshots, every read searches by key (no full scan of a big table), and a version 4 database migrates with
its figures unchanged."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event, select

from core.sketch import merge_blobs
from storage import queries
from storage.engine import latest_version, make_engine, run_migrations
from storage.executions import execution_stats
from storage.rollups import rebuild_rollups
from storage.schema import (
    MICRO_COLUMNS, ROLLUP_LEVELS_S, cycles, legacy_queue_snapshots, queue_rollups, queue_snapshots, series,
)
from tests.storage.queries_helpers import NOW_S


def _view(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(queue_snapshots)).mappings().all())


def _sketch_figures(blob: bytes | None) -> tuple:
    sketch = merge_blobs([blob])
    return sketch.count, sketch.buckets, sketch.min, sketch.max, pytest.approx(sketch.total, rel=1e-12)


def test_rollups_kept_by_the_write_path_equal_rollups_rebuilt_from_the_snapshots(seeded):
    engine, _ = seeded
    with engine.connect() as conn:
        written = [dict(r) for r in conn.execute(select(queue_rollups).order_by(
            queue_rollups.c.level_s, queue_rollups.c.series_id, queue_rollups.c.bucket_ms)).mappings()]
    with engine.begin() as conn:
        for (series_id,) in conn.execute(select(series.c.id)).all():
            rebuild_rollups(conn, series_id)
        rebuilt = [dict(r) for r in conn.execute(select(queue_rollups).order_by(
            queue_rollups.c.level_s, queue_rollups.c.series_id, queue_rollups.c.bucket_ms)).mappings()]
    assert len(written) == len(rebuilt) > 0
    assert {row["level_s"] for row in written} == set(ROLLUP_LEVELS_S)
    for mine, theirs in zip(written, rebuilt):
        for name in ("processing_sketch", "wait_sketch"):
            assert (mine[name] is None) == (theirs[name] is None)
            if mine[name] is not None:
                assert _sketch_figures(mine.pop(name)) == _sketch_figures(theirs.pop(name))
            else:
                mine.pop(name), theirs.pop(name)
        assert mine == theirs
    view = _view(engine)
    hourly = [row for row in written if row["level_s"] == 3600]
    assert sum(row["samples"] for row in hourly) == len(view)
    assert sum(row["finished_delta"] for row in hourly) == int(view["finished_delta"].sum())


def _reference_series(view: pd.DataFrame, queue: str, since_s: float, until_s: float, width_s: float):
    rows = view[(view["queue_name"] == queue) & (view["sampled_at_s"] >= since_s) & (view["sampled_at_s"] <= until_s)]
    bucket = np.floor(rows["sampled_at_s"] / width_s).astype("int64")
    return rows.groupby(bucket).agg(samples=("waiting", "size"), waiting=("waiting", "max"),
                                    finished_delta=("finished_delta", "sum"), failed_delta=("failed_delta", "sum"),
                                    interval_s=("interval_s", "sum"), first=("sampled_at_s", "min"))


@pytest.mark.parametrize("max_points", [8, 31, 2000])
def test_a_chart_from_rollups_equals_the_chart_of_the_snapshots(seeded, max_points):
    engine, result = seeded
    view = _view(engine)
    since_s, until_s = result.since_s + 123.4, result.now_s - 77.0  # edges that cut rollup buckets
    for queue in ("emails", "thumbnails", "celery"):
        chart = queries.queue_series(engine, queue, since_s, until_s, max_points=max_points)
        width_s = chart.attrs["bucket_width_s"]
        expected = _reference_series(view, queue, since_s, until_s, width_s)
        assert chart["bucket"].tolist() == expected.index.tolist()
        assert chart["samples"].tolist() == expected["samples"].tolist()
        assert chart["finished_delta"].tolist() == expected["finished_delta"].tolist()
        assert chart["first_sampled_at_s"].tolist() == expected["first"].tolist()
        assert np.allclose(chart["interval_s"], expected["interval_s"])
        if queue != "celery":
            assert chart["waiting"].tolist() == expected["waiting"].tolist()
        rows = view[(view["queue_name"] == queue) & (view["sampled_at_s"] >= since_s)
                    & (view["sampled_at_s"] <= until_s)]
        bucket = np.floor(rows["sampled_at_s"] / width_s).astype("int64")
        for index, p95 in zip(chart["bucket"], chart["p95_processing_ms"]):
            merged = merge_blobs(rows.loc[bucket == index, "processing_sketch"])
            assert (math.isnan(p95) and merged.count == 0) or p95 == merged.quantile(0.95)


def test_range_percentiles_from_rollups_equal_the_merged_snapshots(seeded):
    engine, result = seeded
    view = _view(engine)
    for since_s, until_s in ((result.since_s, result.now_s), (result.since_s + 61.5, result.now_s - 601.0),
                             (-math.inf, math.inf)):
        for queue in ("reports", "thumbnails"):
            rows = view[(view["queue_name"] == queue) & (view["sampled_at_s"] >= since_s)
                        & (view["sampled_at_s"] <= until_s)]
            expected = merge_blobs(rows["processing_sketch"])
            figures = queries.range_percentiles(engine, queue, since_s, until_s)["processing"]
            assert figures["sampleCount"] == expected.count > 0
            assert [figures["p50"], figures["p95"], figures["p99"]] == expected.quantiles([0.5, 0.95, 0.99])
            assert figures["avg"] == pytest.approx(expected.mean, rel=1e-12)
            assert (figures["min"], figures["max"]) == (expected.min, expected.max)


BIG_TABLES = ("queue_samples", "queue_sample_blobs", "queue_rollups", "worker_snapshots", "host_snapshots",
              "job_failures",
              "cycles", "alert_events")


def _every_read(engine, result) -> None:
    from core.health import Thresholds, ThresholdSet
    from storage.cursors import latest_cursors, recent_intervals
    from storage.memory_current import current_memory
    from storage.memory_trend import leak_hints
    from storage.status import collector_status

    now_s, since_s = result.now_s, result.since_s
    for library in (None, "rq"):
        queries.queue_series(engine, "emails", since_s, now_s, library=library)
        queries.queue_series(engine, "emails", since_s, now_s, max_points=20, library=library)
        queries.range_timing(engine, "emails", since_s, now_s, library=library)
        queries.latest_snapshot(engine, "emails", library=library)
        queries.queue_metrics_history(engine, "emails", limit=5, library=library)
        queries.queue_exists(engine, "emails", library=library)
    execution_stats(engine, "thumbnails")
    queries.latest_snapshots(engine)
    queries.queue_list(engine)
    queries.queue_names(engine)
    queries.dashboard_summary(engine)
    queries.system_figures(engine)
    queries.health_statuses(engine)
    queries.newest_sample_at_s(engine)
    queries.snapshots_export(engine, ["emails"], since_s, now_s)
    queries.snapshots_export(engine, None, since_s, now_s, limit=50)
    queries.export_counts(engine, None, since_s, now_s)
    queries.worker_memory_export(engine, since_s, now_s)
    queries.worker_table(engine, Thresholds())
    queries.worker_memory_summary(engine, Thresholds())
    queries.worker_memory_series(engine, since_s, now_s)
    queries.host_memory_series(engine, since_s, now_s)
    queries.outages(engine, since_s, now_s)
    current_memory(engine, ThresholdSet())
    leak_hints(engine, Thresholds(), now_s)
    recent_intervals(engine, now_s - 300)
    latest_cursors(engine)
    collector_status(engine)
    from storage.failures import failure_counts, recent_failures
    from storage.queries_baseline import baseline_history
    from storage.queries_capacity import all_capacity, flow_windows, queue_advice

    flow_windows(engine, now_s)
    all_capacity(engine, wait_target_s=60.0, now_s=now_s)
    queue_advice(engine, "emails", library="rq", wait_target_s=60.0, now_s=now_s)
    baseline_history(engine, now_s)
    recent_failures(engine, "emails", "rq", since_s, now_s)
    failure_counts(engine, "emails", "rq", since_s, now_s)


@pytest.mark.parametrize("analyzed", [False, True])
def test_no_read_scans_a_big_table(seeded, analyzed):
    engine, result = seeded
    if analyzed:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    statements: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        _every_read(engine, result)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert len(statements) > 40
    scans = _pg_scans(engine, statements) if engine.dialect.name == "postgresql" else []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, parameters in ([] if engine.dialect.name == "postgresql" else statements):
            plan = [row[-1] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())]
            # a scan in key order that stops at a LIMIT (the newest row) reads a few rows, not the table
            stops_early = " LIMIT " in statement.upper() and not any("TEMP B-TREE" in line for line in plan)
            scans += [(line, statement[:300]) for line in plan
                      if line.startswith("SCAN ") and line.split()[1] in BIG_TABLES and not stops_early]
    assert scans == [], "\n".join(f"{line}  <-  {sql}" for line, sql in scans)


def _is_big(relation: str) -> bool:
    """A big table, or one of its day or default partitions."""
    return any(relation == table or relation.startswith(f"{table}_p") or relation == f"{table}_default"
               for table in BIG_TABLES)


def _pg_scans(engine, statements) -> list[tuple[str, str]]:
    """PostgreSQL's plans of the statements with sequential scans priced out: a "Seq Scan" of a big table
    that remains means no index serves the read (one under a LIMIT that needs no sort stops early)."""
    scans = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.execute("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = [row[0] for row in raw.execute(f"EXPLAIN {statement}", parameters or None)]
            stops_early = " LIMIT " in statement.upper() and not any(" Sort " in f" {line} " for line in plan)
            for line in plan:
                words = line.replace("->", " ").split()
                if "Seq" in words and "on" in words and not stops_early:
                    relation = words[words.index("on") + 1]
                    if _is_big(relation):
                        scans.append((line.strip(), statement[:300]))
        raw.execute("RESET enable_seqscan")
        raw.rollback()
    return scans


def _legacy_write_cycle(engine, record, plan_alerts):
    """The write of versions 1 to 4: one queue_snapshots row per queue, worker and host rows, alerts."""
    from storage.schema import host_snapshots, worker_snapshots
    from storage.writer import apply_alert_changes, open_alerts

    with engine.begin() as conn:
        cycle_id = conn.execute(cycles.insert().values(
            started_at_s=record.started_at_s, finished_at_s=record.finished_at_s, ok=True,
            round_trips=record.round_trips, queue_count=len(record.queue_rows))).inserted_primary_key[0]
        for table, rows in ((legacy_queue_snapshots, record.queue_rows), (worker_snapshots, record.worker_rows)):
            if rows:
                conn.execute(table.insert(), [{**row, "cycle_id": cycle_id} for row in rows])
        if record.host_row:
            conn.execute(host_snapshots.insert().values(**record.host_row, cycle_id=cycle_id))
        return apply_alert_changes(conn, plan_alerts(open_alerts(conn)), record.finished_at_s)


def test_a_version_4_database_migrates_in_place_with_its_figures(tmp_path, monkeypatch):
    migrates_with_its_figures(f"sqlite:///{tmp_path / 'v4.db'}", monkeypatch)


def migrates_with_its_figures(url: str, monkeypatch) -> None:
    """Seed a version 4 database at `url` as version 4 wrote it, migrate it, compare every figure."""
    import storage.engine as engine_module
    import tests.seed as seed

    monkeypatch.setattr(engine_module, "MIGRATIONS", engine_module.MIGRATIONS[:4])
    monkeypatch.setattr(seed, "write_cycle", _legacy_write_cycle)
    old = make_engine(url)
    result = seed.seed_database(old, NOW_S, hours=0.5)
    with old.connect() as conn:
        before = pd.DataFrame(conn.execute(select(legacy_queue_snapshots)
                                           .order_by(legacy_queue_snapshots.c.id)).mappings().all())
    monkeypatch.undo()
    assert run_migrations(old) == latest_version()
    after = _view(old).sort_values(["sampled_at_s", "queue_name"]).reset_index(drop=True)
    before = before.sort_values(["sampled_at_s", "queue_name"]).reset_index(drop=True)
    assert len(after) == len(before) > 0
    for column in after.columns:
        if column in ("finished_cursor", "failed_cursor", "cursor_state"):
            continue  # kept for each queue's newest snapshot only (the collector's resume point)
        mine, theirs = after[column].tolist(), before[column].tolist()
        if column in MICRO_COLUMNS:  # stored to the microsecond since version 8
            assert [pd.isna(v) for v in mine] == [pd.isna(v) for v in theirs], column
            assert all(abs(a - b) <= 0.0005 + 1e-9 for a, b in zip(mine, theirs) if not pd.isna(b)), column
            continue
        assert [None if pd.isna(v) else v for v in mine] == [None if pd.isna(v) else v for v in theirs], column
    for queue in result.queues:
        newest = before[before["queue_name"] == queue].iloc[-1]
        latest = queries.latest_snapshot(old, queue)
        assert latest["finished_cursor"] == newest["finished_cursor"]
        assert latest["waiting"] == newest["waiting"] and latest["sampled_at_s"] == newest["sampled_at_s"]
        rows = before[before["queue_name"] == queue]
        expected = merge_blobs(rows["processing_sketch"])
        figures = queries.range_percentiles(old, queue, -math.inf, math.inf)["processing"]
        assert figures["sampleCount"] == expected.count
        assert [figures["p50"], figures["p95"], figures["p99"]] == expected.quantiles([0.5, 0.95, 0.99])
        chart = queries.queue_series(old, queue, result.since_s, result.now_s, max_points=10)
        reference = _reference_series(before, queue, result.since_s, result.now_s, chart.attrs["bucket_width_s"])
        assert chart["samples"].tolist() == reference["samples"].tolist()
        assert chart["finished_delta"].tolist() == reference["finished_delta"].tolist()
    with old.connect() as conn:
        assert conn.execute(select(queue_rollups.c.level_s).distinct()).scalars().all()
    old.dispose()


def _as_version_7(engine) -> None:
    """Give queue_samples and queue_latest the float ms columns of versions 5-7 (values from the µs ones)."""
    from sqlalchemy import text

    from storage.schema import micro_name, schema_version

    with engine.begin() as conn:
        conn.execute(text("DROP VIEW queue_snapshots"))
        for table in ("queue_samples", "queue_latest"):
            for name in MICRO_COLUMNS:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} FLOAT"))
                conn.execute(text(f"UPDATE {table} SET {name} = {micro_name(name)} / 1000.0"))
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {micro_name(name)}"))
        conn.execute(schema_version.delete().where(schema_version.c.version == 8))


def test_version_8_turns_float_durations_into_microseconds_in_place(seeded):
    from sqlalchemy import inspect

    engine, result = seeded
    before = _view(engine).sort_values(["sampled_at_s", "queue_name"]).reset_index(drop=True)
    _as_version_7(engine)
    assert "p95_processing_ms" in {c["name"] for c in inspect(engine).get_columns("queue_samples")}
    assert run_migrations(engine) == latest_version()
    for table in ("queue_samples", "queue_latest"):
        names = {c["name"] for c in inspect(engine).get_columns(table)}
        assert {"p95_processing_us", "oldest_waiting_us"} <= names and "p95_processing_ms" not in names, table
    after = _view(engine).sort_values(["sampled_at_s", "queue_name"]).reset_index(drop=True)
    assert len(after) == len(before) > 0
    pd.testing.assert_frame_equal(after, before)
    assert (before["p95_processing_ms"].dropna() % 1 != 0).any()  # fractions of a ms survived
    latest = queries.latest_snapshot(engine, result.queues[0])
    assert latest["p95_processing_ms"] == before[before["queue_name"] == result.queues[0]].iloc[-1]["p95_processing_ms"]


def test_grouped_merge_by_grid_equals_merge_by_sort(monkeypatch):
    import numpy as np

    from core.sketch import Sketch
    from storage import queries_sketch

    rng = np.random.default_rng(5)
    blobs = [Sketch().extend(rng.lognormal(4, 1.5, int(n)).tolist()).to_bytes() for n in rng.integers(1, 80, 300)]
    groups = rng.integers(0, 40, len(blobs))
    by_grid = queries_sketch.grouped_summary(blobs, groups, [0.5, 0.95, 0.99])
    monkeypatch.setattr(queries_sketch, "BINCOUNT_CELLS", 0)  # every merge takes the sort
    by_sort = queries_sketch.grouped_summary(blobs, groups, [0.5, 0.95, 0.99])
    assert len(by_grid) == 40
    pd.testing.assert_frame_equal(by_grid, by_sort)
    merged_by_sort = queries_sketch.merge_all(blobs)
    monkeypatch.undo()
    merged_by_grid = queries_sketch.merge_all(blobs)
    assert merged_by_grid.buckets == merged_by_sort.buckets and merged_by_grid.count == merged_by_sort.count
