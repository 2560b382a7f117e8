"""PostgreSQL: raw snapshots in day partitions, created ahead by the writer, dropped whole by retention, and a
version 7 database partitioned in place with every figure kept."""
from __future__ import annotations

import math

import pandas as pd
from sqlalchemy import func, select, text

from storage import queries
from storage.engine import latest_version, make_engine, run_migrations
from storage.partitions import DAY_MS, day_partitions, is_partitioned, partition_name
from storage.retention import purge
from storage.schema import metadata, queue_rollups, queue_sample_blobs, queue_samples, queue_snapshots
from tests.storage.test_writer import _cycle

DAY_S = DAY_MS / 1000
START_S = 1_760_832_000.0  # 2025-10-19T00:00:00Z


def _rows_in(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()


def test_the_writer_creates_today_and_tomorrow_and_rows_land_in_their_day(pg_engine):
    with pg_engine.connect() as conn:
        assert is_partitioned(conn, "queue_samples") and is_partitioned(conn, "queue_sample_blobs")
    for day in range(3):
        for step in range(4):
            _cycle(pg_engine, START_S + day * DAY_S + 3600 + 10 * step, a=1, b=2)
    with pg_engine.connect() as conn:
        days = day_partitions(conn, "queue_samples")
    start_ms = int(START_S * 1000)
    assert sorted(days) == [start_ms + n * DAY_MS for n in range(4)]  # three written days and the next
    for n in range(3):
        assert _rows_in(pg_engine, partition_name("queue_samples", start_ms + n * DAY_MS)) == 8
    assert _rows_in(pg_engine, "queue_samples_default") == 0


def test_a_row_outside_every_day_partition_goes_to_the_default_then_moves_to_its_day(pg_engine):
    from storage.partitions import create_days

    _cycle(pg_engine, START_S + 100.0, a=1)
    far_s = START_S + 40 * DAY_S
    with pg_engine.begin() as conn:  # a row written without the writer's look-ahead (e.g. a clock jump)
        row = dict(conn.execute(select(queue_samples)).mappings().first())
        conn.execute(queue_samples.insert().values({**row, "sampled_at_ms": int(far_s * 1000)}))
    assert _rows_in(pg_engine, "queue_samples_default") == 1
    far_day = int(far_s * 1000) // DAY_MS * DAY_MS
    with pg_engine.begin() as conn:
        create_days(conn, [far_day])
    assert _rows_in(pg_engine, "queue_samples_default") == 0
    assert _rows_in(pg_engine, partition_name("queue_samples", far_day)) == 1


def test_retention_drops_whole_days_and_deletes_only_the_straddling_rows(pg_engine):
    for day in range(3):
        for step in range(3):
            _cycle(pg_engine, START_S + day * DAY_S + 7200 * step, a=1, b=2)
    start_ms = int(START_S * 1000)
    with pg_engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    cutoff_s = START_S + DAY_S + 3600  # inside day 2: day 1 goes whole, one cycle of day 2 row by row
    removed = purge(pg_engine, cutoff_s)
    assert removed["queue_snapshots"] == 6 + 2
    with pg_engine.connect() as conn:
        days = day_partitions(conn, "queue_samples")
        assert start_ms not in days and start_ms + DAY_MS in days
        assert start_ms not in day_partitions(conn, "queue_sample_blobs")
        oldest = conn.execute(select(func.min(queue_snapshots.c.sampled_at_s))).scalar_one()
    assert oldest == START_S + DAY_S + 7200
    assert _rows_in(pg_engine, "queue_samples") == 18 - 8
    _cycle(pg_engine, START_S + 2 * DAY_S + 20000, a=1, b=2)  # writes go on after a drop
    assert _rows_in(pg_engine, "queue_samples") == 12


def _plain(value):
    """Figures with NaN as None (NaN never equals itself), for comparing nested results."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _figures(engine, result) -> dict:
    with engine.connect() as conn:
        view = pd.DataFrame(conn.execute(select(queue_snapshots)).mappings().all())
        rollups = pd.DataFrame(conn.execute(select(queue_rollups)).mappings().all())
        blobs = conn.execute(select(func.count()).select_from(queue_sample_blobs)).scalar_one()
    view = view.sort_values(["sampled_at_s", "queue_name"]).reset_index(drop=True)
    rollups = rollups.sort_values(["level_s", "series_id", "bucket_ms"]).reset_index(drop=True)
    per_queue = {}
    for queue in result.queues:
        chart = queries.queue_series(engine, queue, result.since_s, result.now_s, max_points=10)
        percentiles = queries.range_percentiles(engine, queue, -math.inf, math.inf)
        per_queue[queue] = (chart.to_dict("list"), percentiles, queries.latest_snapshot(engine, queue))
    return _plain({"view": view.to_dict("list"), "rollups": rollups.to_dict("list"), "blobs": blobs,
                   "queues": per_queue})


def test_a_version_7_database_is_partitioned_in_place_with_its_history(postgres_url, monkeypatch):
    import storage.engine as engine_module
    from tests.seed import seed_database
    from tests.storage.queries_helpers import NOW_S

    monkeypatch.setattr(engine_module, "MIGRATIONS", engine_module.MIGRATIONS[:7])
    old = make_engine(postgres_url)
    try:
        with old.connect() as conn:
            assert not is_partitioned(conn, "queue_samples")
        result = seed_database(old, NOW_S, hours=0.3)
        before = _figures(old, result)
        monkeypatch.undo()
        assert run_migrations(old) == latest_version()
        with old.connect() as conn:
            assert is_partitioned(conn, "queue_samples") and is_partitioned(conn, "queue_sample_blobs")
            assert int(NOW_S * 1000) // DAY_MS * DAY_MS in day_partitions(conn, "queue_samples")
        assert _rows_in(old, "queue_samples_default") == 0
        after = _figures(old, result)
        assert len(before["view"]["queue_name"]) > 0 and before["blobs"] > 0
        assert after == before
    finally:
        metadata.drop_all(old)
        old.dispose()
