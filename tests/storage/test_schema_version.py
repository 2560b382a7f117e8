"""A database migrated by a newer queuewatch is refused, on SQLite and PostgreSQL, with both versions named."""
from __future__ import annotations

import time

import pytest

from storage.engine import MIGRATIONS, SchemaTooNew, latest_version, make_engine
from storage.schema import metadata, schema_version
from tests.queuewatch.test_bad_input import run_cli


def _stamp_newer(engine) -> int:
    newer = latest_version() + 5
    with engine.begin() as conn:
        conn.execute(schema_version.insert().values(version=newer, applied_at_s=time.time()))
    return newer


def test_a_newer_sqlite_schema_is_refused(db_url):
    engine = make_engine(db_url)
    newer = _stamp_newer(engine)
    engine.dispose()
    with pytest.raises(SchemaTooNew, match=f"schema version {newer}, newer than version {latest_version()}"):
        make_engine(db_url)
    for command in (["export", "--out", "-"], ["collect", "--once", "--redis", "redis://127.0.0.1:1/0"],
                    ["tokens", "list"]):
        result = run_cli(*command, "--db", db_url)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"queuewatch: the database has schema version {newer}, newer than version {latest_version()} "
            "that this queuewatch knows: upgrade queuewatch (or use another database)"]


def test_a_newer_postgresql_schema_is_refused(postgres_url):
    engine = make_engine(postgres_url)
    try:
        newer = _stamp_newer(engine)
        with pytest.raises(SchemaTooNew, match=f"{newer}.*{latest_version()}"):
            make_engine(postgres_url)
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_the_current_version_is_accepted_again(db_url):
    make_engine(db_url).dispose()
    engine = make_engine(db_url)  # a second open migrates nothing and refuses nothing
    with engine.connect() as conn:
        versions = [row[0] for row in conn.execute(schema_version.select().with_only_columns(schema_version.c.version))]
    assert versions == [number for number, _ in MIGRATIONS]
    engine.dispose()
