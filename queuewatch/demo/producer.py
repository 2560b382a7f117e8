"""What the RQ, BullMQ and Celery demo producers share: seeded knobs and arrivals, progress, the run loop."""
from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis

from queuewatch.demo.profiles import Arrivals, FlagsConfig, JobProfile

RETRY_FIRST_S = 0.5
RETRY_CAP_S = 10.0
SUMMARY_FIRST_S = 30.0
SUMMARY_EVERY_S = 60.0


@dataclass(frozen=True)
class ProducerConfig(FlagsConfig):
    """The knobs every producer has (each redeclares `seed` with its own default, keeping the field order)."""

    seed: int = 0
    rate_scale: float = 1.0


ConfigT = TypeVar("ConfigT", bound=ProducerConfig)


class Producer(Generic[ConfigT]):
    """A producer's common state: its knobs, an rng seeded from them that also draws the Poisson arrivals of
    `profiles`, a serial for job ids, and a progress line in the log now and then."""

    def __init__(self, config: ConfigT, profiles: Sequence[JobProfile], log: Callable[[str], None]) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.arrivals = Arrivals(profiles, self.rng, config.rate_scale)
        self.log = log
        self._serial = 0
        self._next_summary_at_s = SUMMARY_FIRST_S

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _summarise(self, elapsed_s: float, verb: str, counts: Mapping[str, int]) -> None:
        """Log the counts so far, 30 s after the start and every minute after that."""
        if elapsed_s >= self._next_summary_at_s:
            self.log(f"t={elapsed_s:.0f}s {verb} so far: {dict(counts)}")
            self._next_summary_at_s = elapsed_s + SUMMARY_EVERY_S


class Backoff:
    """How long a run loop pauses: what its step asks (kept within 0.01..0.5 s) while the broker answers; while
    it does not, the logged retry delay, doubling up to RETRY_CAP_S (the loops wait on their stop event, so a
    stop request still ends the pause at once)."""

    def __init__(self, broker: str, log: Callable[[str], None]) -> None:
        self.broker = broker
        self.log = log
        self.retry_s = RETRY_FIRST_S

    def succeeded(self, wait_s: float) -> float:
        self.retry_s = RETRY_FIRST_S
        return _pause_s(wait_s)

    def failed(self, exc: BaseException) -> float:
        self.log(f"{self.broker} unreachable ({exc}); retrying in {self.retry_s:.1f} s")
        wait_s, self.retry_s = self.retry_s, min(self.retry_s * 2, RETRY_CAP_S)
        return wait_s


def run_until_stopped(stop: threading.Event, clock: Callable[[], float], kickoff: Callable[[], None],
                      step: Callable[[float], float], errors: tuple[type[BaseException], ...], broker: str,
                      log: Callable[[str], None]) -> None:
    """Kick off once, then step (seconds since the start) until `stop` is set, riding out `errors`."""
    backoff = Backoff(broker, log)
    started_s = clock()
    kicked_off = False
    while not stop.is_set():
        try:
            if not kicked_off:
                kickoff()
                kicked_off = True
            pause_s = backoff.succeeded(step(clock() - started_s))
        except errors as exc:
            pause_s = backoff.failed(exc)
        stop.wait(pause_s)


def redis_or_complain(prog: str, url: str, **options: Any) -> redis.Redis | None:
    """A client for `url` (nothing is contacted); None, with the reason on stderr, if the URL is malformed."""
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        print(f"{prog}: bad Redis URL {url!r}: {exc}", file=sys.stderr)
        return None


def stop_on_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _pause_s(wait_s: float) -> float:
    return min(max(wait_s, 0.01), 0.5)
