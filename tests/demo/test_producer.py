from __future__ import annotations

from queuewatch.demo.producer import RETRY_CAP_S, Backoff


def test_retry_waits_double_up_to_the_cap_and_reset_after_success():
    logged: list[str] = []
    backoff = Backoff("Redis", logged.append)
    waits = [backoff.failed(ConnectionError("refused")) for _ in range(7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, RETRY_CAP_S, RETRY_CAP_S]
    assert logged[1] == "Redis unreachable (refused); retrying in 1.0 s"
    assert backoff.succeeded(5.0) == 0.5  # a step's own pause stays short
    assert backoff.failed(ConnectionError("refused")) == 0.5
