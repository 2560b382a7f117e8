"""Streams of demo jobs for the RQ, BullMQ and Celery producers: rates, durations, outcomes, arrivals."""
from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Self

OK, ERROR, TIMEOUT = "ok", "error", "timeout"
CATCH_UP_S = 5.0
"""Arrivals further behind than this are dropped rather than produced in one go (after a stall)."""


class FlagsConfig:
    """A frozen dataclass of producer knobs that round-trips through command-line flags."""

    def to_argv(self) -> list[str]:
        """Command-line flags that reproduce this configuration."""
        argv: list[str] = []
        for spec in fields(self):  # type: ignore[arg-type]
            argv += [f"--{spec.name.replace('_', '-')}", str(getattr(self, spec.name))]
        return argv

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field, typed like the field's default."""
        for spec in fields(cls):  # type: ignore[arg-type]
            default = spec.default
            parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, type=type(default),
                                default=default, help=f"default {default}")

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Self:
        """The configuration the parsed flags describe."""
        return cls(**{spec.name: getattr(args, spec.name) for spec in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class JobProfile:
    """One stream of jobs: its queue, arrival rate, log-normal duration and failure mix."""

    name: str
    queue: str
    rate_per_s: float
    median_ms: float
    spread: float
    max_ms: float
    error_pct: float
    timeout_pct: float = 0.0
    job_timeout_s: int = 60


def draw_outcome(rng: random.Random, profile: JobProfile) -> str:
    """"ok", "error" or "timeout", in the proportions of the profile."""
    roll_pct = rng.uniform(0.0, 100.0)
    if roll_pct < profile.timeout_pct:
        return TIMEOUT
    if roll_pct < profile.timeout_pct + profile.error_pct:
        return ERROR
    return OK


def draw_work_ms(rng: random.Random, profile: JobProfile, outcome: str) -> float:
    """How long a job runs: past its timeout for "timeout", else log-normal and well inside the timeout."""
    if outcome == TIMEOUT:
        return profile.job_timeout_s * 1000.0 + rng.uniform(500.0, 2000.0)
    duration_ms = rng.lognormvariate(math.log(profile.median_ms), profile.spread)
    ceiling_ms = min(profile.max_ms, profile.job_timeout_s * 1000.0 * 0.9)
    return round(min(duration_ms, ceiling_ms), 1)


class Arrivals:
    """Seeded Poisson arrivals of several profiles: which jobs are due by a given time since the start."""

    def __init__(self, profiles: Sequence[JobProfile], rng: random.Random, rate_scale: float = 1.0) -> None:
        self.profiles = tuple(profiles)
        self.rng = rng
        self.rate_scale = rate_scale
        self._next_at_s = {profile.name: self._gap_s(profile) for profile in self.profiles}

    def due(self, elapsed_s: float) -> list[JobProfile]:
        """The profiles of the jobs that arrive by `elapsed_s`, one entry per job, in profile order."""
        jobs: list[JobProfile] = []
        self.each_due(elapsed_s, jobs.append)
        return jobs

    def each_due(self, elapsed_s: float, arrive: Callable[[JobProfile], object]) -> None:
        """Call `arrive` with the profile of each job that arrives by `elapsed_s`, in profile order.

        Each call comes before the next gap is drawn, so what `arrive` draws from the shared rng interleaves
        with the gaps; if it raises, that profile's pending arrivals are kept and come due again.
        """
        for profile in self.profiles:
            due_s = max(self._next_at_s[profile.name], elapsed_s - CATCH_UP_S)
            while due_s <= elapsed_s:
                arrive(profile)
                due_s += self._gap_s(profile)
            self._next_at_s[profile.name] = due_s

    def next_at_s(self) -> float:
        """When the next job of any profile arrives (seconds since the start)."""
        return min(self._next_at_s.values(), default=math.inf)

    def _gap_s(self, profile: JobProfile) -> float:
        return self.rng.expovariate(profile.rate_per_s * self.rate_scale)
