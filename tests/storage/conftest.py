"""Fixtures of the storage tests, each on SQLite and on PostgreSQL: a seeded database copied per test (a file
copy, or CREATE DATABASE ... TEMPLATE on PostgreSQL) and a fresh migrated one."""
from __future__ import annotations

import pytest

from storage.engine import make_engine
from tests.seed import copy_database, seed_database, write_seed_file
from tests.storage.queries_helpers import NOW_S

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="module", params=BACKENDS)
def template(request, tmp_path_factory):
    """A seeded database per module and backend: (backend, SQLite path or PostgreSQL database name, result)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("seed") / "template.db"
        yield "sqlite", path, write_seed_file(path, NOW_S, hours=1.0)
        return
    databases = request.getfixturevalue("pg_databases")
    name = databases.create()
    engine = make_engine(databases.url_of(name))
    try:
        result = seed_database(engine, NOW_S, hours=1.0)
    finally:
        engine.dispose()
    yield "postgresql", name, result
    databases.drop(name)


@pytest.fixture
def seeded(template, tmp_path, request):
    backend, source, result = template
    if backend == "sqlite":
        engine = make_engine(copy_database(source, tmp_path / "seeded.db"))
        yield engine, result
        engine.dispose()
        return
    databases = request.getfixturevalue("pg_databases")
    name = databases.create(template=source)
    engine = make_engine(databases.url_of(name))
    yield engine, result
    engine.dispose()
    databases.drop(name)


@pytest.fixture(scope="session")
def pg_empty_template(pg_databases):
    """A migrated, empty PostgreSQL database to copy."""
    name = pg_databases.create()
    make_engine(pg_databases.url_of(name)).dispose()
    yield name
    pg_databases.drop(name)


@pytest.fixture(params=BACKENDS)
def engine(request, db_url):
    """A fresh migrated database for one test: a SQLite file, or a copy of an empty PostgreSQL database."""
    if request.param == "sqlite":
        eng = make_engine(db_url)
        yield eng
        eng.dispose()
        return
    databases = request.getfixturevalue("pg_databases")
    name = databases.create(template=request.getfixturevalue("pg_empty_template"))
    eng = make_engine(databases.url_of(name))
    yield eng
    eng.dispose()
    databases.drop(name)
