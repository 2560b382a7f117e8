"""Capacity and timeout advice per queue: pure arithmetic on measured rates and run times.

Arrival rate. No library records enqueues, so arrivals over a window are what ended plus what the backlog grew:
    λ = (ended + (backlog_end − backlog_start)) / window_s,   backlog = waiting + active,
clamped at 0 (a backlog cut by hand is not negative arrivals). Completion rate μ_obs = ended / window_s.
Busy workers: the mean number of active jobs over the window (the L of Little's law L = λ·W for the service
stage; it equals μ_obs × mean run time when workers stay busy).

Workers needed for a p95 wait under a target T. Offered load a = λ × S (S = mean run time, s): fewer than
ceil(a) workers can never keep up. The queue is modelled as M/M/c (Poisson arrivals, exponential run times,
c identical workers, first come first served); with Erlang C, the probability that a job waits at all is
    C(c, a) = c·B / (c − a·(1 − B)),   B = Erlang B(c, a) by the recursion B_k = a·B_{k−1} / (k + a·B_{k−1}),
and P(wait > t) = C(c, a) · exp(−(c − a)·t / S). The advice is the smallest c > a with P(wait > T) ≤ 5 %, so
the p95 wait stays under T. Real run times are often more regular than exponential (the advice then errs on
the safe side) or burstier (it errs short); arrivals in bursts wait longer than Poisson ones.

Drain time: backlog / (μ_obs − λ) while completions outpace arrivals; "growing" when they do not and jobs wait;
0 with nothing waiting. Every figure is None (n/a) when an input was not measured.

Timeout advice: suggested = p99.9 of run times × 1.5, rounded up to a readable step; a configured timeout
below the p99 cuts off normal jobs, one above 10 × the longest run is far above any job's run time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

P95 = 0.95
TIMEOUT_HEADROOM = 1.5
TIMEOUT_QUANTILE = 0.999
FAR_ABOVE_FACTOR = 10.0
WORKERS_MAX = 100_000


@dataclass(frozen=True)
class FlowWindow:
    """What a queue did over a window: backlog at both ends, jobs ended, mean active jobs."""

    window_s: float
    backlog_start: int
    backlog_end: int
    ended: int
    mean_active: float | None = None


@dataclass(frozen=True)
class Capacity:
    """Capacity figures of one queue; None where an input was not measured."""

    arrival_per_s: float | None
    completion_per_s: float | None
    busy_workers: float | None
    mean_run_s: float | None
    offered_load: float | None  # λ × S: workers kept busy on average
    workers_needed: int | None
    wait_target_s: float
    drain_s: float | None  # None: n/a or growing
    growing: bool
    backlog: int | None


def arrival_rate_per_s(window: FlowWindow) -> float | None:
    """λ: jobs ended plus backlog growth over the window, per second (never below 0)."""
    if window.window_s <= 0:
        return None
    return max(0.0, (window.ended + window.backlog_end - window.backlog_start) / window.window_s)


def completion_rate_per_s(window: FlowWindow) -> float | None:
    """μ_obs: jobs ended per second over the window."""
    return window.ended / window.window_s if window.window_s > 0 else None


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arriving job waits in an M/M/c queue with `servers` workers and offered load `load`."""
    if load <= 0:
        return 0.0
    if servers <= load:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    return servers * blocking / (servers - load * (1.0 - blocking))


def wait_exceeds_probability(servers: int, load: float, mean_run_s: float, wait_s: float) -> float:
    """P(wait > wait_s) in M/M/c: C(c, a) · exp(−(c − a)·wait_s / S)."""
    if servers <= load:
        return 1.0
    return erlang_c(servers, load) * math.exp(-(servers - load) * wait_s / mean_run_s)


def workers_for_wait(arrival_per_s: float, mean_run_s: float, wait_target_s: float,
                     quantile: float = P95) -> int:
    """The fewest workers that keep the `quantile` wait under `wait_target_s` (M/M/c, Erlang C)."""
    load = arrival_per_s * mean_run_s
    if load <= 0:
        return 0
    servers = max(1, math.floor(load) + 1)
    while wait_exceeds_probability(servers, load, mean_run_s, wait_target_s) > 1.0 - quantile:
        servers += 1
        if servers >= WORKERS_MAX:
            return WORKERS_MAX
    return servers


def drain_time_s(backlog: int, arrival_per_s: float, completion_per_s: float) -> float | None:
    """Seconds to empty the backlog at the current rates; 0 when empty; None when it does not shrink."""
    if backlog <= 0:
        return 0.0
    net = completion_per_s - arrival_per_s
    return backlog / net if net > 0 else None


def capacity(window: FlowWindow | None, mean_run_ms: float | None, wait_target_s: float) -> Capacity:
    """Every capacity figure of a queue from its flow over a window and its mean run time."""
    arrival = arrival_rate_per_s(window) if window else None
    completion = completion_rate_per_s(window) if window else None
    mean_run_s = mean_run_ms / 1000.0 if mean_run_ms is not None and mean_run_ms > 0 else None
    backlog = window.backlog_end if window else None
    offered = arrival * mean_run_s if arrival is not None and mean_run_s is not None else None
    needed = None
    if arrival is not None and mean_run_s is not None and wait_target_s > 0:
        needed = workers_for_wait(arrival, mean_run_s, wait_target_s)
    elif arrival == 0.0:
        needed = 0
    drain, growing = None, False
    if arrival is not None and completion is not None and backlog is not None:
        drain = drain_time_s(backlog, arrival, completion)
        growing = drain is None
    return Capacity(arrival_per_s=arrival, completion_per_s=completion,
                    busy_workers=window.mean_active if window else None, mean_run_s=mean_run_s,
                    offered_load=offered, workers_needed=needed, wait_target_s=wait_target_s,
                    drain_s=drain, growing=growing, backlog=backlog)


def drain_text(figures: Capacity) -> str:
    """"drains in 4 min", "growing", "empty" or "n/a"."""
    if figures.growing:
        return "growing"
    if figures.drain_s is None:
        return "n/a"
    if figures.drain_s == 0:
        return "empty"
    return f"drains in {duration_text(figures.drain_s)}"


def duration_text(seconds: float) -> str:
    """A short duration: 45 s, 4 min, 2.5 h, 3 d."""
    if seconds < 90:
        return f"{math.ceil(seconds):.0f} s"
    if seconds < 5400:
        return f"{math.ceil(seconds / 60):.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


@dataclass(frozen=True)
class TimeoutAdvice:
    """A suggested timeout next to the configured one, and what is wrong with the configured one."""

    suggested_s: float | None
    configured_s: float | None
    p99_s: float | None
    p999_s: float | None
    max_s: float | None
    verdict: str | None  # "cuts_off_normal_jobs", "far_above_run_times", "ok"; None when not judged


def nice_ceiling(seconds: float) -> float:
    """Rounded up to 1, 2 or 5 times a power of ten (0.37 -> 0.5, 13 -> 20, 130 -> 200)."""
    if seconds <= 0:
        return 0.0
    power = 10.0 ** math.floor(math.log10(seconds))
    for step in (1.0, 2.0, 5.0, 10.0):
        if seconds <= step * power * (1 + 1e-9):
            return round(step * power, 6)
    return round(10.0 * power, 6)


def timeout_advice(p99_ms: float | None, p999_ms: float | None, max_ms: float | None,
                   configured_s: float | None) -> TimeoutAdvice:
    """The suggested timeout (p99.9 × 1.5, rounded up) and the verdict on the configured one."""
    p99_s = p99_ms / 1000.0 if p99_ms is not None else None
    p999_s = p999_ms / 1000.0 if p999_ms is not None else None
    max_s = max_ms / 1000.0 if max_ms is not None else None
    suggested = nice_ceiling(p999_s * TIMEOUT_HEADROOM) if p999_s else None
    verdict = None
    if configured_s is not None and p99_s is not None and max_s is not None:
        if configured_s < p99_s:
            verdict = "cuts_off_normal_jobs"
        elif configured_s > FAR_ABOVE_FACTOR * max_s:
            verdict = "far_above_run_times"
        else:
            verdict = "ok"
    return TimeoutAdvice(suggested_s=suggested, configured_s=configured_s, p99_s=p99_s, p999_s=p999_s,
                         max_s=max_s, verdict=verdict)


VERDICT_TEXT = {"cuts_off_normal_jobs": "cuts off normal jobs (below the p99 run time)",
                "far_above_run_times": "is far above any job's run time (over 10 × the longest)",
                "ok": "fits the run times"}
