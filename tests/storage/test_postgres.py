"""The storage layer on PostgreSQL: the same writes, alerts and retention as on SQLite."""
from __future__ import annotations

from tests.storage import test_history_layout, test_retention, test_writer
from storage.engine import PG_POOL_SIZE
from tests.storage.queries_helpers import NOW_S


def test_alert_lifecycle_on_postgres(pg_engine):
    test_writer.test_alert_lifecycle_through_stored_cycles(pg_engine)


def test_failing_cycle_rolls_back_on_postgres(pg_engine):
    test_writer.test_a_failing_cycle_leaves_nothing_behind(pg_engine)


def test_retention_on_postgres(pg_engine):
    test_retention.test_removes_exactly_the_rows_older_than_the_cutoff(pg_engine)


def test_rollups_and_reads_from_them_on_postgres(pg_engine):
    from tests.seed import seed_database

    seeded = (pg_engine, seed_database(pg_engine, NOW_S, hours=0.3))
    test_history_layout.test_rollups_kept_by_the_write_path_equal_rollups_rebuilt_from_the_snapshots(seeded)
    test_history_layout.test_a_chart_from_rollups_equals_the_chart_of_the_snapshots(seeded, 8)
    test_history_layout.test_range_percentiles_from_rollups_equal_the_merged_snapshots(seeded)


def test_a_version_4_database_migrates_on_postgres(postgres_url, monkeypatch):
    from storage.engine import make_engine
    from storage.schema import metadata

    try:
        test_history_layout.migrates_with_its_figures(postgres_url, monkeypatch)
    finally:
        engine = make_engine(postgres_url, migrate=False)
        metadata.drop_all(engine)
        engine.dispose()


def _plain(postgres_url: str) -> str:
    """The test cluster's URL as a user types it: no driver named."""
    assert postgres_url.startswith("postgresql://")
    return postgres_url


def test_a_plain_postgresql_url_uses_psycopg_3(postgres_url):
    from storage.engine import make_engine
    from storage.schema import metadata

    engine = make_engine(_plain(postgres_url))
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool.size() == PG_POOL_SIZE
        test_writer.test_alert_lifecycle_through_stored_cycles(engine)
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_collect_and_export_with_a_plain_postgresql_url(postgres_url, redis_url, tmp_path):
    import csv
    import io

    import redis
    from rq import Queue

    from storage.engine import make_engine
    from storage.schema import metadata
    from tests.collector import rq_jobs
    from tests.queuewatch.test_bad_input import run_cli

    Queue("pg-emails", connection=redis.Redis.from_url(redis_url)).enqueue(rq_jobs.noop)
    url = _plain(postgres_url)
    try:
        collected = run_cli("collect", "--once", "--redis", redis_url, "--db", url,
                            env={"QUEUEWATCH_LIBRARIES": "rq"})
        assert collected.returncode == 0, collected.stderr
        exported = run_cli("export", "--out", "-", "--db", url, "--queue", "pg-emails")
        assert exported.returncode == 0, exported.stderr
        rows = list(csv.DictReader(io.StringIO(exported.stdout)))
        assert [(row["queueName"], row["waiting"]) for row in rows] == [("pg-emails", "1")]
    finally:
        engine = make_engine(url, migrate=False)
        metadata.drop_all(engine)
        engine.dispose()


def test_notifications_and_their_delivery_log_on_postgres(pg_engine):
    from tests.collector import test_webhooks
    from tests.collector.receivers import HttpReceiver

    receiver = HttpReceiver()
    try:
        test_webhooks.test_events_are_posted_in_order_and_once_across_restarts(pg_engine, receiver)
    finally:
        receiver.close()


def test_delivery_log_queries_on_postgres(pg_engine):
    from tests.storage import test_notify_log

    test_notify_log.test_attempts_are_logged_and_announcements_found(pg_engine)


def test_failures_and_baseline_on_postgres(pg_engine):
    from tests.storage import test_baseline_history, test_failures_table

    test_failures_table.test_failures_round_trip(pg_engine)
    test_baseline_history.test_spike_flagged_and_normal_variation_not(pg_engine)


def test_capacity_on_postgres(pg_engine):
    from tests.storage import test_queries_capacity

    test_queries_capacity.test_flow_window_and_advice_from_stored_snapshots(pg_engine)
