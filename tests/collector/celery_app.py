"""The Celery app and tasks that the Celery reader tests run on real workers (`celery -A tests.collector.celery_app`).

The broker URL comes from QW_CELERY_BROKER, the result backend from QW_CELERY_BACKEND (none when unset) and
broker transport options from QW_CELERY_TRANSPORT_OPTIONS (JSON), so that test processes and workers agree.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from celery import Celery

BROKER_ENV = "QW_CELERY_BROKER"
BACKEND_ENV = "QW_CELERY_BACKEND"
TRANSPORT_OPTIONS_ENV = "QW_CELERY_TRANSPORT_OPTIONS"
PUBLISH_STAMP_ENV = "QW_CELERY_PUBLISH_STAMP"


def sleep_for(seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


def sleep_noting_pid(pid_path: str, seconds: float) -> float:
    """Write the pool process's pid to `pid_path`, then sleep (so a test can kill that process mid-task)."""
    Path(pid_path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return seconds


def fail(message: str = "boom") -> None:
    """Raise an ordinary exception."""
    raise ValueError(message)


def noop() -> None:
    """Do nothing."""


TASKS = {"qw.sleep_for": sleep_for, "qw.sleep_noting_pid": sleep_noting_pid, "qw.fail": fail,
         "qw.noop": noop}


def make_app(broker_url: str | None = None, *, backend_url: str | None = None,
             transport_options: dict | None = None, send_sent_events: bool = True) -> Celery:
    """A Celery app on this broker with the test tasks registered."""
    celery_app = Celery("qw_tests", broker=broker_url or os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
                        backend=backend_url if backend_url is not None else os.environ.get(BACKEND_ENV) or None)
    options = transport_options
    if options is None:
        options = json.loads(os.environ.get(TRANSPORT_OPTIONS_ENV) or "{}")
    celery_app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_send_sent_event=send_sent_events,
        result_extended=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )

    for name, function in TASKS.items():
        celery_app.task(name=name)(function)
    return celery_app


app = make_app()

if os.environ.get(PUBLISH_STAMP_ENV):
    from collector.celery_publish import install_publish_timestamp

    install_publish_timestamp()
