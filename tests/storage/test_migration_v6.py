"""Schema version 6 (alert timers, silences, three alerts columns) applies whether or not version 5 ran."""
from __future__ import annotations

from sqlalchemy import inspect, text

import storage.engine as engine_module
from storage.engine import MIGRATIONS, latest_version, make_engine, run_migrations
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
    assert run_migrations(old) == latest_version()
    assert V6_COLUMNS <= {c["name"] for c in inspect(old).get_columns("alerts")}
    assert {"alert_rule_states", "silences"} <= set(inspect(old).get_table_names())
    assert _versions(old) == sorted(number for number, _ in MIGRATIONS)


def test_version_6_arriving_after_5_and_7_still_runs(db_url, monkeypatch):
    monkeypatch.setattr(engine_module, "MIGRATIONS", [m for m in MIGRATIONS if m[0] != 6])
    engine = make_engine(db_url)  # every version but 6
    assert 6 not in _versions(engine) and 7 in _versions(engine)
    monkeypatch.undo()
    assert run_migrations(engine) == latest_version()
    assert _versions(engine) == sorted(number for number, _ in MIGRATIONS)
    assert V6_COLUMNS <= {c["name"] for c in inspect(engine).get_columns("alerts")}
    assert {"alert_rule_states", "silences"} <= set(inspect(engine).get_table_names())
