"""Helpers of the Celery reader tests: kombu message envelopes, polling."""
from __future__ import annotations

import json
import time
from collections.abc import Callable


def envelope(body, *, headers: dict | None = None) -> str:
    """A message the way kombu's Redis transport stores or publishes it (JSON body, base64)."""
    import base64

    return json.dumps({"body": base64.b64encode(json.dumps(body).encode()).decode(), "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": headers or {},
                       "properties": {"body_encoding": "base64", "delivery_info": {}, "priority": 0}})


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
