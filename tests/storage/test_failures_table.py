"""job_failures through the writer: duplicates skipped, bounded per queue, counts by type, purged by retention."""
from __future__ import annotations

from core.failures import FailureRecord
from storage import failures
from storage.retention import purge
from storage.writer import CycleRecord, write_cycle

NOW_S = 1_796_000_000.0


def _failure(job_id: str, at_s: float, exception_type: str = "ValueError", queue: str = "billing") -> FailureRecord:
    return FailureRecord(library="rq", queue_name=queue, job_id=job_id, failed_at_s=at_s, job_name="app.pay\x00",
                         exception_type=exception_type, message=f"{job_id} failed\x00", traceback="Traceback\n...",
                         worker="w1", run_ms=12.5)


def _cycle(engine, at_s: float, records: list[FailureRecord], kept: int = 1000) -> None:
    write_cycle(engine, CycleRecord(at_s, at_s, 1, failures=records, failures_kept=kept))


def test_failures_round_trip(engine):
    _cycle(engine, NOW_S, [_failure("a", NOW_S - 30), _failure("b", NOW_S - 20, "KeyError"),
                           _failure("c", NOW_S - 10)])
    _cycle(engine, NOW_S + 10, [_failure("c", NOW_S - 10), _failure("d", NOW_S + 5, queue="other")])  # c again
    recent = failures.recent_failures(engine, "billing", "rq", NOW_S - 60, NOW_S + 60)
    assert list(recent["job_id"]) == ["c", "b", "a"]
    assert recent.iloc[0]["message"] == "c failed\ufffd" and recent.iloc[0]["run_ms"] == 12.5
    assert recent.iloc[0]["job_name"] == "app.pay\ufffd"  # NUL, which PostgreSQL refuses, replaced
    counts = failures.failure_counts(engine, "billing", "rq", NOW_S - 60, NOW_S + 60)
    assert counts[["exception_type", "count"]].values.tolist() == [["ValueError", 2], ["KeyError", 1]]
    assert failures.failure_counts(engine, "billing", "rq", NOW_S - 25, NOW_S + 60)["count"].sum() == 2
    detail = failures.failure_traceback(engine, int(recent.iloc[0]["id"]))
    assert detail["traceback"] == "Traceback\n..." and failures.failure_traceback(engine, 10**9) is None

    _cycle(engine, NOW_S + 20, [_failure(f"n{i}", NOW_S + 20 + i) for i in range(5)], kept=4)
    kept = failures.recent_failures(engine, "billing", "rq", 0, NOW_S + 100)
    assert list(kept["job_id"]) == ["n4", "n3", "n2", "n1"]  # the newest 4 of the queue
    assert len(failures.recent_failures(engine, "other", "rq", 0, NOW_S + 100)) == 1  # other queues untouched

    counts = purge(engine, NOW_S + 22.5)
    assert counts["job_failures"] == 3  # n1, n2 and d are older than the cut-off
    assert list(failures.recent_failures(engine, "billing", "rq", 0, NOW_S + 100)["job_id"]) == ["n4", "n3"]


def test_version_9_applies_on_a_version_7_database(db_url, monkeypatch):
    from sqlalchemy import inspect

    import storage.engine as engine_module
    from storage.engine import make_engine, run_migrations

    monkeypatch.setattr(engine_module, "MIGRATIONS", [m for m in engine_module.MIGRATIONS if m[0] <= 7])
    old = make_engine(db_url)
    assert "job_failures" not in inspect(old).get_table_names()
    monkeypatch.undo()
    assert run_migrations(old) >= 9 and "job_failures" in inspect(old).get_table_names()
    test_failures_round_trip(old)
    old.dispose()
