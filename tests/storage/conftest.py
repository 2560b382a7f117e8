"""Fixtures of the storage tests: a seeded SQLite database, copied per test."""
from __future__ import annotations

import pytest

from storage.engine import make_engine
from tests.seed import copy_database, write_seed_file
from tests.storage.queries_helpers import NOW_S


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("seed") / "template.db"
    return path, write_seed_file(path, NOW_S, hours=1.0)


@pytest.fixture
def seeded(template, tmp_path):
    path, result = template
    engine = make_engine(copy_database(path, tmp_path / "seeded.db"))
    yield engine, result
    engine.dispose()
