"""The parsing layer and the once-per-key-per-hour log, on their own (no I/O)."""
from __future__ import annotations

import logging

import pytest

from collector.agents import parse_report
from core.problems import ProblemLog
from core.values import (
    INT64_MAX,
    PID_MAX,
    as_float,
    as_int,
    as_name,
    as_text,
    epoch_ms,
    epoch_s,
    parse_json,
)


@pytest.mark.parametrize("raw, expected", [
    ("12", 12), (b"12", 12), ("12.0", 12), (12.0, 12), (0, 0), ("1e3", 1000),
    ("1e30", None), (10 ** 30, None), ("-5", None), ("inf", None), ("1e400", None), ("NaN", None),
    (float("nan"), None), (True, None), ("12.5", None), ("huge", None), ("", None), (None, None),
    ("9" * 100, None), (b"\xff\xfe", None),
])
def test_as_int_takes_bounded_whole_numbers_only(raw, expected):
    assert as_int(raw) == expected


def test_bounds_are_the_callers_and_never_beyond_64_bits():
    assert as_int(2 ** 70, high=PID_MAX) is None and as_int(PID_MAX, high=PID_MAX) == PID_MAX
    assert as_int(2 ** 63, high=2 ** 80) is None and as_int(INT64_MAX, high=2 ** 80) == INT64_MAX
    assert as_int("-3", low=-10) == -3
    assert as_float("2.5") == 2.5 and as_float(float("inf")) is None and as_float(10 ** 400) is None
    assert as_float("5", low=0.0, high=1.0) is None


def test_times_must_be_plausible():
    assert epoch_s(1_700_000_000) == 1_700_000_000.0 and epoch_s(100.0) is None and epoch_s(1e12) is None
    assert epoch_ms("1700000000000") == 1_700_000_000.0 and epoch_ms("0") is None and epoch_ms("1e400") is None


def test_names_are_strict_and_text_is_safe():
    assert as_name("emails") == "emails" and as_name(b"emails") == "emails"
    assert as_name("q" * 256) is None and as_name("a\x00b") is None and as_name(b"\xff") is None
    assert as_name("") is None and as_name(5) is None
    assert as_text(b"\xffok") == "\ufffdok" and len(as_text("x" * 100_000)) == 65_536


def test_json_is_bounded_in_size_and_depth():
    assert parse_json('{"a": [1, {"b": "[[[["}]}') == {"a": [1, {"b": "[[[["}]}
    assert parse_json("[" * 100_000 + "]" * 100_000) is None  # json.loads would raise RecursionError
    assert parse_json('{"a": Infinity}') is None and parse_json("nope") is None and parse_json(b"\xff") is None
    assert parse_json('"' + "x" * 2_000_000 + '"') is None


def test_each_key_is_logged_once_an_hour(caplog):
    now = [0.0]
    problems = ProblemLog(every_s=3600.0, clock=lambda: now[0], max_keys=2)
    with caplog.at_level(logging.WARNING, logger="core.problems"):
        for _ in range(5):
            problems.report("rq:worker:w1", "bad pid")
        problems.report("rq:worker:w2", "bad pid")
        now[0] = 3599.0
        problems.report("rq:worker:w1", "bad pid")
        now[0] = 3600.0
        problems.report("rq:worker:w1", "bad pid")
        problems.report(b"key\x00with nul " + b"x" * 500, "bad")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0:3] for m in messages[:3]] == [["malformed value in Redis at rq", "worker", "w1"],
                                                         ["malformed value in Redis at rq", "worker", "w2"],
                                                         ["malformed value in Redis at rq", "worker", "w1"]]
    assert len(messages) == 4 and "key\\0with nul" in messages[3] and len(messages[3]) < 300
    assert problems.reported == 9


def test_a_guarded_item_is_skipped_and_reported(caplog):
    problems = ProblemLog()
    with caplog.at_level(logging.WARNING, logger="core.problems"):
        assert problems.guard("rq:queue:x", "queue", lambda: 1 / 0) is None
        assert problems.guard("rq:queue:y", "queue", lambda: 7) == 7
    assert "rq:queue:x: queue skipped (ZeroDivisionError" in caplog.records[0].getMessage()


def test_agent_reports_are_read_through_the_parsing_layer():
    problems = ProblemLog()
    base = ('{"library": "rq", "worker_id": "w", "queues": ["q", "%s"], "pid": %s, "hostname": "h", '
            '"started_at_s": 1700000000, "reported_at_s": 1700000005, "period_s": 5, "ttl_s": 15, '
            '"jobs_processed": %s, "rss_mb": %s}')
    good = parse_report("k", base % ("q" * 300, 7, 3, 12.5), problems)
    assert (good.queues, good.pid, good.jobs_processed, good.rss_mb) == (("q",), 7, 3, 12.5)
    assert parse_report("k", base % ("q", 2 ** 70, 3, 1), problems) is None
    assert parse_report("k", base % ("q", 7, 1e30, 1), problems) is None
    assert parse_report("k", base % ("q", 7, -1, 1), problems) is None
    huge = parse_report("k", base % ("q", 7, 3, '"huge"'), problems)
    assert huge is not None and huge.rss_mb is None and huge.heap_used_mb is None
    assert parse_report("k", base % ("q", 7, 3, "1e400"), problems).rss_mb is None
