"""The demo's BullMQ part: a seeded producer over two queues and asyncio workers of the Python bullmq package.

`python -m queuewatch.demo.bullmq_workload worker --redis URL --queue image-resize --name N` runs workers;
`python -m queuewatch.demo.bullmq_workload producer --redis URL` adds jobs with priorities in every tier, some
delayed, some failing and some exceeding their asyncio timeout, and pauses one queue for a while now and then.
Both stop on SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from bullmq import Queue

from core.priorities import TIERS
from queuewatch.demo.bullmq_jobs import run_workers
from queuewatch.demo.producer import Backoff, Producer, ProducerConfig, redis_or_complain
from queuewatch.demo.profiles import ERROR, OK, TIMEOUT, JobProfile, draw_outcome, draw_work_ms

IMAGE_QUEUE = "image-resize"
SEARCH_QUEUE = "search-indexing"
BULLMQ_QUEUES = (IMAGE_QUEUE, SEARCH_QUEUE)
PAUSED_QUEUE = IMAGE_QUEUE
NO_PRIORITY = 0
PRIORITY_WEIGHTS: tuple[tuple[int, float], ...] = (
    (NO_PRIORITY, 35.0), (TIERS[0], 5.0), (TIERS[1], 15.0), (TIERS[2], 20.0), (TIERS[3], 15.0),
    (TIERS[4], 10.0))
"""Priority of an added job and its weight; 0 adds it without a priority (to `:wait`)."""
WIDTHS_PX = (160, 320, 640, 1280)
INDEXES = ("products", "articles", "users")


@dataclass(frozen=True)
class BullMQWorkerSpec:
    """One demo BullMQ worker process: its queues and how many jobs it runs at once."""

    role: str
    queues: tuple[str, ...]
    concurrency: int


BULLMQ_WORKERS: tuple[BullMQWorkerSpec, ...] = (
    BullMQWorkerSpec("bullmq-images", (IMAGE_QUEUE,), 2),
    BullMQWorkerSpec("bullmq-search", (SEARCH_QUEUE,), 3),
)

BULLMQ_PROFILES: tuple[JobProfile, ...] = (
    JobProfile("resize", IMAGE_QUEUE, 1.0, 350, 0.6, 1800, error_pct=5.0, timeout_pct=4.0, job_timeout_s=2),
    JobProfile("index-document", SEARCH_QUEUE, 1.6, 120, 0.8, 900, error_pct=3.0, timeout_pct=2.0,
               job_timeout_s=1),
)


@dataclass(frozen=True)
class BullMQConfig(ProducerConfig):
    """Knobs of the BullMQ producer."""

    seed: int = 11
    keep_completed: int = 100
    keep_failed: int = 2000
    delayed_pct: float = 8.0
    max_delay_s: float = 20.0
    pause_after_s: float = 45.0
    pause_for_s: float = 20.0
    pause_every_s: float = 180.0


class BullMQWorkload(Producer[BullMQConfig]):
    """Adds the BullMQ demo jobs as time passes; `step` does what is due, `run` loops until stopped."""

    def __init__(self, queues: Mapping[str, Queue], config: BullMQConfig | None = None,
                 log: Callable[[str], None] = print) -> None:
        super().__init__(config or BullMQConfig(), BULLMQ_PROFILES, log)
        self.queues = queues
        self.added: Counter[str] = Counter()
        self.options: Counter[str] = Counter()
        self.paused = False
        self._pause_at_s = self.config.pause_after_s
        self._resume_at_s = float("inf")

    async def run(self, stop: asyncio.Event, clock: Callable[[], float] | None = None) -> None:
        """Kick off, then add what is due until `stop` is set (rides out Redis outages), then unpause.

        The asyncio twin of producer.run_until_stopped.
        """
        clock = clock or asyncio.get_running_loop().time
        started_s = clock()
        backoff = Backoff("Redis", self.log)
        kicked_off = False
        while not stop.is_set():
            try:
                if not kicked_off:
                    await self.kickoff()
                    kicked_off = True
                pause_s = backoff.succeeded(await self.step(clock() - started_s))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                pause_s = backoff.failed(exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause_s)
            except TimeoutError:
                pass
        if self.paused:
            await self._set_paused(False)
        self.log(f"stopped after adding {sum(self.added.values())} jobs: {dict(self.added)}, "
                 f"with {dict(self.options)}")

    async def kickoff(self) -> None:
        """Every outcome on every queue and one job per priority tier, so every figure has data early."""
        for profile in BULLMQ_PROFILES:
            for outcome in (OK, ERROR, TIMEOUT):
                await self._add(profile, outcome, priority=NO_PRIORITY, delay_ms=0)
            for tier in TIERS:
                await self._add(profile, OK, priority=tier, delay_ms=0)
            await self._add(profile, OK, priority=NO_PRIORITY, delay_ms=int(self.rng.uniform(3000.0, 8000.0)))

    async def step(self, elapsed_s: float) -> float:
        """Add what is due `elapsed_s` seconds after the start; returns seconds until the next event."""
        for profile in self.arrivals.due(elapsed_s):
            await self._add(profile, draw_outcome(self.rng, profile), *self._draw_options())
        if elapsed_s >= self._pause_at_s:
            await self._set_paused(True)
            self._pause_at_s = elapsed_s + self.config.pause_every_s
            self._resume_at_s = elapsed_s + self.config.pause_for_s
        if elapsed_s >= self._resume_at_s:
            await self._set_paused(False)
            self._resume_at_s = float("inf")
        self._summarise(elapsed_s, "added", self.added)
        return min(self.arrivals.next_at_s(), self._pause_at_s, self._resume_at_s) - elapsed_s

    def _draw_options(self) -> tuple[int, int]:
        """(priority, delay in ms) of the next job."""
        priorities, weights = zip(*PRIORITY_WEIGHTS)
        priority = self.rng.choices(priorities, weights)[0]
        delayed = self.rng.uniform(0.0, 100.0) < self.config.delayed_pct
        delay_ms = int(self.rng.uniform(2.0, self.config.max_delay_s) * 1000) if delayed else 0
        return priority, delay_ms

    def job(self, profile: JobProfile, outcome: str) -> dict[str, Any]:
        """The data of one job of `profile` with this outcome."""
        serial = self._next_serial()
        data: dict[str, Any] = {"work_ms": draw_work_ms(self.rng, profile, outcome), "fail": outcome == ERROR,
                                "timeout_s": profile.job_timeout_s}
        if profile.queue == IMAGE_QUEUE:
            data.update(image_id=serial, width_px=self.rng.choice(WIDTHS_PX))
        else:
            data.update(document_id=serial, index=self.rng.choice(INDEXES))
        return data

    async def _add(self, profile: JobProfile, outcome: str, priority: int, delay_ms: int) -> None:
        opts: dict[str, Any] = {"removeOnComplete": self.config.keep_completed,
                                "removeOnFail": self.config.keep_failed}
        if priority:
            opts["priority"] = priority
        if delay_ms:
            opts["delay"] = delay_ms
        await self.queues[profile.queue].add(profile.name, self.job(profile, outcome), opts)
        self.added[f"{profile.name}:{outcome}"] += 1
        if priority:
            self.options[f"priority-{priority}"] += 1
        if delay_ms:
            self.options["delayed"] += 1

    async def _set_paused(self, paused: bool) -> None:
        queue = self.queues[PAUSED_QUEUE]
        await (queue.pause() if paused else queue.resume())
        self.paused = paused
        self.log(f"{'paused' if paused else 'resumed'} {PAUSED_QUEUE}")


def worker_argv(spec: BullMQWorkerSpec, redis_url: str, name: str) -> list[str]:
    """Command line of one demo BullMQ worker process."""
    argv = [sys.executable, "-m", "queuewatch.demo.bullmq_workload", "worker", "--redis", redis_url,
            "--name", name, "--concurrency", str(spec.concurrency)]
    for queue in spec.queues:
        argv += ["--queue", queue]
    return argv


def producer_argv(redis_url: str, config: BullMQConfig) -> list[str]:
    """Command line of the BullMQ producer process."""
    return [sys.executable, "-m", "queuewatch.demo.bullmq_workload", "producer", "--redis", redis_url,
            *config.to_argv()]


async def _produce(redis_url: str, config: BullMQConfig, stop: asyncio.Event) -> None:
    queues = {name: Queue(name, {"connection": redis_url}) for name in BULLMQ_QUEUES}
    try:
        await BullMQWorkload(queues, config, log=lambda line: print(line, flush=True)).run(stop)
    finally:
        await asyncio.gather(*(queue.close() for queue in queues.values()), return_exceptions=True)


async def _main_async(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.command == "worker":
        await run_workers(args.redis_url, args.queues, args.name, args.concurrency, stop,
                          log=lambda line: print(line, flush=True))
    else:
        await _produce(args.redis_url, BullMQConfig.from_namespace(args), stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the BullMQ worker and producer subprocesses."""
    parser = argparse.ArgumentParser(prog="python -m queuewatch.demo.bullmq_workload", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run bullmq workers until SIGINT/SIGTERM")
    worker.add_argument("--redis", dest="redis_url", required=True, help="Redis URL")
    worker.add_argument("--queue", dest="queues", action="append", required=True, help="queue (repeatable)")
    worker.add_argument("--name", required=True, help="worker name (shown in CLIENT LIST)")
    worker.add_argument("--concurrency", type=int, default=2, help="jobs run at once per queue (default 2)")
    producer = commands.add_parser("producer", help="add demo jobs until SIGINT/SIGTERM")
    producer.add_argument("--redis", dest="redis_url", required=True, help="Redis URL")
    BullMQConfig.add_arguments(producer)
    args = parser.parse_args(argv)
    if redis_or_complain("bullmq_workload", args.redis_url) is None:
        return 2
    asyncio.run(_main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
