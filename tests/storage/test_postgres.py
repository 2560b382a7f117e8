"""The storage layer on PostgreSQL: the same writes, alerts and retention as on SQLite."""
from __future__ import annotations

from tests.storage import test_retention, test_writer


def test_alert_lifecycle_on_postgres(pg_engine):
    test_writer.test_alert_lifecycle_through_stored_cycles(pg_engine)


def test_failing_cycle_rolls_back_on_postgres(pg_engine):
    test_writer.test_a_failing_cycle_leaves_nothing_behind(pg_engine)


def test_retention_on_postgres(pg_engine):
    test_retention.test_removes_exactly_the_rows_older_than_the_cutoff(pg_engine)
