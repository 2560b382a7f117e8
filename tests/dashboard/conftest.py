"""Fixtures of the dashboard tests: a seeded SQLite database, copied per test."""
from __future__ import annotations

import time

import pytest

from tests.seed import copy_database, write_seed_file


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("seed") / "template.db"
    write_seed_file(path, time.time(), hours=1.0)
    return path


@pytest.fixture
def seeded_url(template, tmp_path, monkeypatch):
    url = copy_database(template, tmp_path / "seeded.db")
    monkeypatch.setenv("QUEUEWATCH_DB_URL", url)
    return url
