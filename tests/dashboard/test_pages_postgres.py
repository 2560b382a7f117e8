"""The dashboard's page tests on PostgreSQL: the seeded history is written once into a template database and
copied per test (CREATE DATABASE ... TEMPLATE); the tests themselves are those of test_pages."""
from __future__ import annotations

import time

import pytest

from storage.engine import make_engine
from tests.dashboard.test_pages import (  # noqa: F401 - collected here again, with this module's seeded_url
    test_overview_shows_the_summary,
    test_every_page_renders_on_a_seeded_database,
    test_queue_detail_follows_the_queue_and_range,
    test_acknowledge_button_acknowledges_in_the_database,
    test_alert_filters,
    test_login_is_required_and_checked,
    test_a_page_run_on_its_own_needs_a_session,
    test_non_admins_are_refused,
    test_sessions_expire,
    test_overview_filters_by_library_and_shows_na,
    test_queue_detail_of_a_bullmq_queue,
    test_queue_detail_of_a_celery_queue_says_what_is_not_measured,
    test_workers_show_library_memory_source_and_na,
    test_export_filters_by_library,
    test_workers_page_shows_leak_hints,
    test_workers_page_without_leaks_says_so,
)
from tests.seed import seed_database


@pytest.fixture(scope="module")
def pg_template(pg_databases):
    name = pg_databases.create()
    engine = make_engine(pg_databases.url_of(name))
    try:
        seed_database(engine, time.time(), hours=1.0)
    finally:
        engine.dispose()
    yield name
    pg_databases.drop(name)


@pytest.fixture
def seeded_url(pg_template, pg_databases, monkeypatch):
    """A copy of the seeded PostgreSQL database for one test, as the dashboard's QUEUEWATCH_DB_URL."""
    name = pg_databases.create(template=pg_template)
    url = pg_databases.url_of(name)
    monkeypatch.setenv("QUEUEWATCH_DB_URL", url)
    yield url
    pg_databases.drop(name)
