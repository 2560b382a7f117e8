"""The opt-in publish-time hook for Celery producers: a `qw_published_at` header on every task message.

The collector reads it to tell how long the oldest message has waited (see docs/celery.md).
"""
from __future__ import annotations

import time
from typing import Any

from collector.celery_layout import PUBLISHED_AT_HEADER

PUBLISH_HOOK_UID = "queuewatch-published-at"


def stamp_published_at(headers: dict | None = None, **_: Any) -> None:
    """`before_task_publish` receiver: records the publish time (epoch seconds) in the message headers."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


def install_publish_timestamp() -> None:
    """Opt-in, in the producing processes: add a publish-time header to every task message."""
    from celery.signals import before_task_publish

    before_task_publish.connect(stamp_published_at, weak=False, dispatch_uid=PUBLISH_HOOK_UID)


def uninstall_publish_timestamp() -> None:
    """Undo install_publish_timestamp()."""
    from celery.signals import before_task_publish

    before_task_publish.disconnect(stamp_published_at, dispatch_uid=PUBLISH_HOOK_UID)
