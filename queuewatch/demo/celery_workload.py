"""The demo's Celery producer: a seeded mix of invoice charges and PDF renders, with priorities and time-outs.

Run as `python -m queuewatch.demo.celery_workload --redis URL`; it stops on SIGINT or SIGTERM. It sends
`task-sent` events and stamps each message with its publish time (collector.celery_publish), as docs/celery.md
asks of producers.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from collector.celery_publish import install_publish_timestamp
from queuewatch.demo.celery_app import (
    BILLING_QUEUE,
    CELERY_QUEUES,
    CHARGE_TASK,
    PDF_QUEUE,
    PDF_TIME_LIMIT_S,
    RENDER_TASK,
    app,
)
from queuewatch.demo.producer import (
    Producer,
    ProducerConfig,
    redis_or_complain,
    run_until_stopped,
    stop_on_signals,
)
from queuewatch.demo.profiles import ERROR, OK, TIMEOUT, JobProfile, draw_outcome, draw_work_ms

CELERY_CONCURRENCY = 2
PRIORITY_WEIGHTS: tuple[tuple[int, float], ...] = ((0, 30.0), (3, 30.0), (6, 25.0), (9, 15.0))
"""Message priority (kombu's Redis buckets 0, 3, 6, 9; 0 is taken first) and its weight."""

CELERY_PROFILES: tuple[JobProfile, ...] = (
    JobProfile("charge-invoice", BILLING_QUEUE, 1.0, 180, 0.6, 1500, error_pct=6.0),
    JobProfile("render-pdf", PDF_QUEUE, 0.4, 700, 0.5, 1800, error_pct=4.0, timeout_pct=6.0,
               job_timeout_s=PDF_TIME_LIMIT_S),
)
TASK_OF_PROFILE = {"charge-invoice": CHARGE_TASK, "render-pdf": RENDER_TASK}


@dataclass(frozen=True)
class CeleryConfig(ProducerConfig):
    """Knobs of the Celery producer."""

    seed: int = 13
    kickoff_renders: int = 6


class CeleryWorkload(Producer[CeleryConfig]):
    """Sends the Celery demo tasks as time passes; `step` does what is due, `run` loops until stopped."""

    def __init__(self, app: Celery, config: CeleryConfig | None = None,
                 log: Callable[[str], None] = print) -> None:
        super().__init__(config or CeleryConfig(), CELERY_PROFILES, log)
        self.app = app
        self.sent: Counter[str] = Counter()
        self.priorities: Counter[int] = Counter()

    def run(self, stop: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        """Kick off, then send what is due until `stop` is set; rides out broker outages."""
        outages = (OperationalError, redis.ConnectionError, redis.TimeoutError)
        run_until_stopped(stop, clock, self.kickoff, self.step, outages, "broker", self.log)
        self.log(f"stopped after sending {sum(self.sent.values())} tasks: {dict(self.sent)}, "
                 f"priorities {dict(self.priorities)}")

    def kickoff(self) -> None:
        """Every outcome on both queues, then a batch of renders across the priority buckets."""
        for profile in CELERY_PROFILES:
            for outcome in (OK, ERROR, TIMEOUT) if profile.timeout_pct else (OK, ERROR):
                self.send(profile, outcome, priority=0)
        render = CELERY_PROFILES[1]
        buckets = [priority for priority, _ in PRIORITY_WEIGHTS]
        for index in range(self.config.kickoff_renders):
            self.send(render, OK, priority=buckets[index % len(buckets)])

    def step(self, elapsed_s: float) -> float:
        """Send what is due `elapsed_s` seconds after the start; returns seconds until the next task."""
        for profile in self.arrivals.due(elapsed_s):
            self.send(profile, draw_outcome(self.rng, profile), self._draw_priority())
        self._summarise(elapsed_s, "sent", self.sent)
        return self.arrivals.next_at_s() - elapsed_s

    def _draw_priority(self) -> int:
        priorities, weights = zip(*PRIORITY_WEIGHTS)
        return self.rng.choices(priorities, weights)[0]

    def arguments(self, profile: JobProfile, outcome: str) -> tuple[tuple, dict]:
        """Positional and keyword arguments of one task of `profile` with this outcome."""
        serial = self._next_serial()
        kwargs = {"work_ms": draw_work_ms(self.rng, profile, outcome), "fail": outcome == ERROR}
        if profile.queue == BILLING_QUEUE:
            return (serial, self.rng.randint(500, 250_000)), kwargs
        return (serial, self.rng.randint(1, 40)), kwargs

    def send(self, profile: JobProfile, outcome: str, priority: int) -> None:
        """Publish one task (routed to its queue by the app's task_routes)."""
        args, kwargs = self.arguments(profile, outcome)
        self.app.send_task(TASK_OF_PROFILE[profile.name], args=args, kwargs=kwargs, priority=priority,
                           queue=profile.queue)
        self.sent[f"{profile.name}:{outcome}"] += 1
        self.priorities[priority] += 1


def worker_argv(redis_url: str, name: str, concurrency: int = CELERY_CONCURRENCY) -> list[str]:
    """Command line of the demo Celery worker: task events on (-E), prefork pool, both demo queues."""
    return [sys.executable, "-m", "celery", "-A", "queuewatch.demo.celery_app", "--broker", redis_url,
            "worker", "-E", "-Q", ",".join(CELERY_QUEUES), "--pool", "prefork",
            "--concurrency", str(concurrency),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]


def producer_argv(redis_url: str, config: CeleryConfig) -> list[str]:
    """Command line of the Celery producer process."""
    return [sys.executable, "-m", "queuewatch.demo.celery_workload", "--redis", redis_url, *config.to_argv()]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the producer subprocess."""
    parser = argparse.ArgumentParser(prog="python -m queuewatch.demo.celery_workload", description=__doc__)
    parser.add_argument("--redis", dest="redis_url", required=True, help="Redis URL of the Celery broker")
    CeleryConfig.add_arguments(parser)
    args = parser.parse_args(argv)
    if redis_or_complain("celery_workload", args.redis_url) is None:
        return 2
    stop = stop_on_signals()
    app.conf.broker_url = args.redis_url
    install_publish_timestamp()
    try:
        config = CeleryConfig.from_namespace(args)
        workload = CeleryWorkload(app, config, log=lambda line: print(line, flush=True))
        workload.run(stop)
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
