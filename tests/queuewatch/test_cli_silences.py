"""`queuewatch silences add|list|expire` as real processes over a real SQLite file."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from storage.engine import make_engine
from storage.schema import alerts, silences
from storage.writer import apply_alert_changes
from core.alert_rules import AlertChange
from storage.alert_state import refresh_silenced
from tests.queuewatch.test_bad_input import assert_one_line_refusal, run_cli


def _open_alert(db_url: str, queue_name: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        apply_alert_changes(conn, [AlertChange("opened", f"alert-1-{queue_name}-queue_depth", queue_name,
                                               "queue_depth", "warning", "Queue depth above warning threshold",
                                               215.0, 200.0, library="rq")], time.time())
        refresh_silenced(conn, time.time())
    engine.dispose()


def test_add_list_expire(db_url):
    _open_alert(db_url, "bulk-imports")
    added = run_cli("silences", "add", "--queue", "bulk-*", "--library", "rq", "--type", "queue_depth",
                    "--severity", "warning", "--for", "2h", "--comment", "nightly import", "--by", "ops@example.com",
                    "--db", db_url)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("silence 1 until ")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        (row,) = conn.execute(select(silences)).mappings().all()
        assert conn.execute(select(alerts.c.silenced_by)).scalar_one() == 1  # applied at once
    assert (row["queue_glob"], row["library"], row["alert_type"], row["severity"], row["created_by"]) == \
        ("bulk-*", "rq", "queue_depth", "warning", "ops@example.com")
    assert abs(row["ends_at_s"] - row["starts_at_s"] - 7200) < 1e-6
    listed = run_cli("silences", "list", "--db", db_url)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert lines[1].startswith("1\tactive\tqueue=bulk-*, library=rq, type=queue_depth, severity=warning\tuntil ")
    assert lines[1].endswith("\tby ops@example.com\tnightly import")
    expired = run_cli("silences", "expire", "1", "--db", db_url)
    assert expired.returncode == 0 and expired.stdout.startswith("silence 1 expired at ")
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.silenced_by)).scalar_one() is None
    assert run_cli("silences", "list", "--db", db_url).stdout.strip().splitlines()[1:] == []
    assert "1\texpired\t" in run_cli("silences", "list", "--all", "--db", db_url).stdout


@pytest.mark.parametrize("args,fragment,status", [
    (["add", "--for", "soon", "--comment", "x"], "not a duration", 2),
    (["add", "--for", "0s", "--comment", "x"], "above 0", 2),
    (["add", "--for", "1h"], "--comment", 2),
    (["add", "--for", "1h", "--comment", "x", "--type", "nonsense"], "invalid choice", 2),
    (["add", "--for", "1h", "--comment", "   "], "needs a comment", 2),
    (["expire", "42"], "no silence with id 42", 1),
])
def test_refusals(db_url, args, fragment, status):
    assert_one_line_refusal(run_cli("silences", *args, "--db", db_url), fragment, status=status)
