"""Schema version 6 (alert timers, silences, three alerts columns) applies whether or not version 5 ran."""
from __future__ import annotations

from sqlalchemy import inspect, text

import storage.engine as engine_module
from storage.engine import MIGRATIONS, make_engine, run_migrations
from storage.schema import schema_version

V6_COLUMNS = {"library", "silenced_by", "acknowledged_until_s"}


def _versions(engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(schema_version.select().with_only_columns(schema_version.c.version)).scalars())


def test_a_version_4_database_gets_version_6(db_url, monkeypatch):
    monkeypatch.setattr(engine_module, "MIGRATIONS", [m for m in MIGRATIONS if m[0] <= 4])
    old = make_engine(db_url)
    with old.begin() as conn:  # alerts as version 1 created them
        conn.execute(text("DROP TABLE alerts"))
        conn.execute(text("CREATE TABLE alerts (id VARCHAR(400) PRIMARY KEY, queue_name VARCHAR(255) NOT NULL)"))
    monkeypatch.undo()
    assert run_migrations(old) == 6
    assert V6_COLUMNS <= {c["name"] for c in inspect(old).get_columns("alerts")}
    assert {"alert_rule_states", "silences"} <= set(inspect(old).get_table_names())
    assert _versions(old) == [1, 2, 3, 4, 6]


def test_version_6_after_a_version_5_and_a_version_5_after_6(db_url, monkeypatch):
    ran: list[str] = []

    def v5_snapshots(conn) -> None:  # another branch's migration 5, touching no alert table
        ran.append("v5")
        conn.execute(text("CREATE TABLE IF NOT EXISTS v5_marker (id INTEGER PRIMARY KEY)"))

    engine = make_engine(db_url)  # 1-4 and 6 applied
    assert _versions(engine) == [1, 2, 3, 4, 6]
    monkeypatch.setattr(engine_module, "MIGRATIONS", sorted([*MIGRATIONS, (5, v5_snapshots)]))
    assert run_migrations(engine) == 6  # 5 arrives later and still runs
    assert ran == ["v5"] and _versions(engine) == [1, 2, 3, 4, 5, 6]
    assert run_migrations(engine) == 6 and ran == ["v5"]  # and only once


def test_version_6_on_a_database_where_5_ran_first(tmp_path, monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'five.db'}"

    def v5(conn) -> None:
        conn.execute(text("CREATE TABLE v5_marker (id INTEGER PRIMARY KEY)"))

    monkeypatch.setattr(engine_module, "MIGRATIONS", [*[m for m in MIGRATIONS if m[0] <= 4], (5, v5)])
    engine = make_engine(db_url)
    assert _versions(engine) == [1, 2, 3, 4, 5]
    monkeypatch.setattr(engine_module, "MIGRATIONS", sorted([*MIGRATIONS, (5, v5)]))
    assert run_migrations(engine) == 6
    assert _versions(engine) == [1, 2, 3, 4, 5, 6]
    assert V6_COLUMNS <= {c["name"] for c in inspect(engine).get_columns("alerts")}
