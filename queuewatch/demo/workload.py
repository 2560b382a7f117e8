"""The demo producer: a seeded, endless mix of RQ jobs over five queues, with periodic bursts.

Run as `python -m queuewatch.demo.workload --redis URL`; it stops on SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from rq import Queue
from rq.job import Dependency

from queuewatch.demo import jobs
from queuewatch.demo.producer import (
    Producer,
    ProducerConfig,
    redis_or_complain,
    run_until_stopped,
    stop_on_signals,
)
from queuewatch.demo.profiles import JobProfile, draw_outcome, draw_work_ms

EMAIL_QUEUE = "email-campaigns"
NOTIFY_QUEUE = "notification-delivery"
ASSET_QUEUE = "asset-processing"
REPORT_QUEUE = "report-generation"
WEBHOOK_QUEUE = "webhooks"
QUEUE_NAMES = (EMAIL_QUEUE, NOTIFY_QUEUE, ASSET_QUEUE, REPORT_QUEUE, WEBHOOK_QUEUE)
SCHEDULED_QUEUES = (EMAIL_QUEUE, REPORT_QUEUE)
"""Queues that receive `enqueue_in` jobs: the worker running the scheduler must listen on them."""

RESULT_TTL_S = 600
FAILURE_TTL_S = 3600
CHANNELS = ("push", "sms", "in-app")
ENDPOINTS = ("https://hooks.acme.example/orders", "https://crm.example.net/rq", "https://erp.example.org/events")
SECTIONS = ("summary", "revenue", "churn")


PROFILES: tuple[JobProfile, ...] = (
    JobProfile("notification", NOTIFY_QUEUE, 3.0, 40, 0.8, 1500, error_pct=3.0),
    JobProfile("campaign-email", EMAIL_QUEUE, 1.0, 120, 0.7, 2500, error_pct=4.0),
    JobProfile("webhook", WEBHOOK_QUEUE, 1.5, 200, 1.0, 1800,
               error_pct=18.0, timeout_pct=4.0, job_timeout_s=2),
    JobProfile("asset", ASSET_QUEUE, 0.5, 700, 0.6, 4000, error_pct=2.0, timeout_pct=2.0, job_timeout_s=5),
    JobProfile("report", REPORT_QUEUE, 0.15, 1500, 0.5, 3500,
               error_pct=3.0, timeout_pct=5.0, job_timeout_s=4),
)
BURST_PROFILE = JobProfile("campaign-burst", EMAIL_QUEUE, 0.0, 50, 0.5, 600, error_pct=4.0)


@dataclass(frozen=True)
class WorkerSpec:
    """One demo RQ worker: its queues in priority order.

    `simple` runs jobs in the worker process itself (rq's SimpleWorker), so the memory that asset jobs keep
    shows in the worker's RSS; the others fork a work horse per job, as RQ does by default.
    """

    role: str
    queues: tuple[str, ...]
    simple: bool = False
    with_scheduler: bool = False


DEMO_WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("mailer-1", (NOTIFY_QUEUE, EMAIL_QUEUE)),
    WorkerSpec("mailer-2", (EMAIL_QUEUE, WEBHOOK_QUEUE)),
    WorkerSpec("reports-1", (REPORT_QUEUE, WEBHOOK_QUEUE, EMAIL_QUEUE), with_scheduler=True),
    WorkerSpec("assets-1", (ASSET_QUEUE,), simple=True),
    WorkerSpec("assets-2", (REPORT_QUEUE, ASSET_QUEUE), simple=True),
)


def worker_argv(spec: WorkerSpec, redis_url: str, name: str) -> list[str]:
    """Command line of one RQ worker."""
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "--name", name]
    if spec.simple:
        argv += ["--worker-class", "rq.worker.SimpleWorker"]
    if spec.with_scheduler:
        argv.append("--with-scheduler")
    return argv + list(spec.queues)



@dataclass(frozen=True)
class WorkloadConfig(ProducerConfig):
    """Knobs of the producer; the defaults open a queue-depth alert within the first minute."""

    seed: int = 7
    first_burst_after_s: float = 25.0
    burst_every_s: float = 90.0
    burst_size: int = 600
    pipeline_every_s: float = 15.0
    scheduled_every_s: float = 10.0
    memory_low_mb: float = 16.0
    memory_high_mb: float = 72.0
    memory_period_s: float = 300.0


class Workload(Producer[WorkloadConfig]):
    """Enqueues the demo jobs as time passes; `step` does what is due, `run` loops until stopped."""

    def __init__(self, connection: redis.Redis, config: WorkloadConfig | None = None,
                 log: Callable[[str], None] = print) -> None:
        super().__init__(config or WorkloadConfig(), PROFILES, log)
        self.queues = {name: Queue(name, connection=connection) for name in QUEUE_NAMES}
        self.enqueued: Counter[str] = Counter()
        self._next_burst_at_s = self.config.first_burst_after_s
        self._next_pipeline_at_s = self.config.pipeline_every_s
        self._next_scheduled_at_s = self.config.scheduled_every_s

    def run(self, stop: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        """Kick off, then enqueue what is due until `stop` is set; rides out Redis outages."""
        run_until_stopped(stop, clock, self.kickoff, self.step, (redis.ConnectionError, redis.TimeoutError),
                          "Redis", self.log)
        self.log(f"stopped after enqueueing {sum(self.enqueued.values())} jobs: {dict(self.enqueued)}")

    def kickoff(self) -> None:
        """One job of every kind and outcome at once, so every chart and registry has data early."""
        for profile in PROFILES:
            self._enqueue(profile, "ok")
        webhook = _profile("webhook")
        self._enqueue(webhook, "error")
        self._enqueue(webhook, "timeout")
        self._pipeline()
        for queue_name in SCHEDULED_QUEUES:
            self._scheduled(queue_name, delay_s=8.0)

    def step(self, elapsed_s: float) -> float:
        """Enqueue what is due `elapsed_s` seconds after the start; returns seconds until the next event."""
        self.arrivals.each_due(elapsed_s,
                               lambda profile: self._enqueue(profile, self._outcome(profile), elapsed_s))
        if elapsed_s >= self._next_burst_at_s:
            self._burst()
            self._next_burst_at_s = elapsed_s + self.config.burst_every_s
        if elapsed_s >= self._next_pipeline_at_s:
            self._pipeline()
            self._next_pipeline_at_s = elapsed_s + self.config.pipeline_every_s * self.rng.uniform(0.7, 1.3)
        if elapsed_s >= self._next_scheduled_at_s:
            self._scheduled(self.rng.choice(SCHEDULED_QUEUES), delay_s=self.rng.uniform(5.0, 40.0))
            self._next_scheduled_at_s = elapsed_s + self.config.scheduled_every_s * self.rng.uniform(0.7, 1.3)
        self._summarise(elapsed_s, "enqueued", self.enqueued)
        return min(self.arrivals.next_at_s(), self._next_burst_at_s, self._next_pipeline_at_s,
                   self._next_scheduled_at_s) - elapsed_s

    def cache_limit_mb(self, elapsed_s: float) -> float:
        """Memory each asset worker may keep at this moment: a slow wave between the low and high marks."""
        cfg = self.config
        phase = 0.5 - 0.5 * math.cos(2 * math.pi * elapsed_s / cfg.memory_period_s)
        return cfg.memory_low_mb + (cfg.memory_high_mb - cfg.memory_low_mb) * phase

    def _outcome(self, profile: JobProfile) -> str:
        return draw_outcome(self.rng, profile)

    def _work_ms(self, profile: JobProfile, outcome: str) -> float:
        return draw_work_ms(self.rng, profile, outcome)

    def _call(self, profile: JobProfile, outcome: str,
              elapsed_s: float) -> tuple[Callable[..., Any], tuple, dict]:
        """The job function, positional and keyword arguments of one job of `profile`."""
        rng = self.rng
        kwargs: dict[str, Any] = {"work_ms": self._work_ms(profile, outcome), "fail": outcome == "error"}
        if profile.name == "notification":
            return jobs.deliver_notification, (rng.randint(1, 250_000), rng.choice(CHANNELS)), kwargs
        if profile.name in ("campaign-email", "campaign-burst"):
            return jobs.send_campaign_email, (rng.randint(1, 40), rng.randint(1, 500_000)), kwargs
        if profile.name == "webhook":
            return jobs.deliver_webhook, (rng.choice(ENDPOINTS), self._next_serial()), kwargs
        if profile.name == "asset":
            kwargs.update(hold_mb=round(rng.uniform(2.0, 6.0), 1),
                          cache_limit_mb=round(self.cache_limit_mb(elapsed_s), 1))
            return jobs.process_asset, (self._next_serial(),), kwargs
        if profile.name == "report":
            return jobs.generate_report, (self._next_serial(),), kwargs
        raise ValueError(f"no job function for profile {profile.name!r}")

    def _enqueue(self, profile: JobProfile, outcome: str, elapsed_s: float = 0.0) -> None:
        func, args, kwargs = self._call(profile, outcome, elapsed_s)
        self.queues[profile.queue].enqueue(func, args=args, kwargs=kwargs, job_timeout=profile.job_timeout_s,
                                           result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S)
        self.enqueued[f"{profile.name}:{outcome}"] += 1

    def _burst(self) -> None:
        """A campaign blast: many short e-mails at once, enough to push the queue past the depth warning."""
        queue = self.queues[BURST_PROFILE.queue]
        size = self.config.burst_size
        batch = []
        for _ in range(size):
            func, args, kwargs = self._call(BURST_PROFILE, self._outcome(BURST_PROFILE), 0.0)
            batch.append(Queue.prepare_data(func, args=args, kwargs=kwargs,
                                            timeout=BURST_PROFILE.job_timeout_s,
                                            result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S))
        for start in range(0, size, 100):
            queue.enqueue_many(batch[start:start + 100])
        self.enqueued["campaign-burst"] += size
        self.log(f"burst: {size} jobs into {queue.name}")

    def _pipeline(self) -> None:
        """A multi-part report: sections first, the assembly deferred until they are all done."""
        queue = self.queues[REPORT_QUEUE]
        report_id = self._next_serial()
        parts = [queue.enqueue(jobs.build_report_section, report_id, section,
                               round(self.rng.uniform(500.0, 2500.0), 1), job_timeout=10,
                               result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S)
                 for section in SECTIONS]
        queue.enqueue(jobs.assemble_report, report_id, list(SECTIONS),
                      depends_on=Dependency(jobs=parts, allow_failure=True), job_timeout=10,
                      result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S)
        self.enqueued["report-section"] += len(parts)
        self.enqueued["report-assembly:deferred"] += 1

    def _scheduled(self, queue_name: str, delay_s: float) -> None:
        """A job for later (`enqueue_in`): a digest e-mail or a nightly-style report."""
        delay = timedelta(seconds=delay_s)
        queue = self.queues[queue_name]
        if queue_name == EMAIL_QUEUE:
            queue.enqueue_in(delay, jobs.send_campaign_email, 0, self.rng.randint(1, 500_000),
                             work_ms=round(self.rng.uniform(50.0, 400.0), 1), result_ttl=RESULT_TTL_S,
                             failure_ttl=FAILURE_TTL_S)
        else:
            queue.enqueue_in(delay, jobs.generate_report, self._next_serial(),
                             work_ms=round(self.rng.uniform(500.0, 2500.0), 1), job_timeout=10,
                             result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S)
        self.enqueued[f"{queue_name}:scheduled"] += 1


def _profile(name: str) -> JobProfile:
    return next(profile for profile in PROFILES if profile.name == name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the producer subprocess."""
    parser = argparse.ArgumentParser(prog="python -m queuewatch.demo.workload", description=__doc__)
    parser.add_argument("--redis", dest="redis_url", required=True, help="Redis URL the RQ workers use")
    WorkloadConfig.add_arguments(parser)
    args = parser.parse_args(argv)
    stop = stop_on_signals()
    connection = redis_or_complain("workload", args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    if connection is None:
        return 2
    config = WorkloadConfig.from_namespace(args)
    workload = Workload(connection, config, log=lambda line: print(line, flush=True))
    workload.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
