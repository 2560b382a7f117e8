"""The BullMQ backend: reads BullMQ queues and worker connections from Redis in three round trips, never writing.

Verified against Python bullmq 3.4.4 and Node bullmq 6.7.0 (the same Lua scripts), on Redis 7.0; needs
Redis >= 6.2 (SCAN TYPE, exclusive XRANGE ids). On a Redis Cluster one reader reads each master
(collector/cluster.py): `owns` keeps the queues whose `:meta` key lives on that master, `atomic=False`.

Round trips per cycle, whatever the number of queues, jobs or workers:
1. discovery: CLIENT LIST and one SCAN step (`MATCH <prefix>:*:meta COUNT scan_count TYPE hash`) per prefix;
2. snapshot, one MULTI/EXEC so that counts, counters, events and TIME agree (collector/bullmq_snapshot.py);
3. details: HMGET of the sampled and judged jobs and of the oldest-waiting candidates, EXISTS of the active
   jobs' locks (skipped when empty).

Discovery (the queue registry BullMQ lacks, its SCAN cost) and workers (CLIENT LIST) are in
collector/bullmq_discovery.py.

Throughput (new_finished/new_failed) comes from cumulative sources only, never from the trimmed sets:
- "metrics": the `count` field of `:metrics:completed`/`:metrics:failed`, incremented atomically with each
  final completion/failure by workers started with the `metrics` option; O(1) per cycle. A counter that went
  down (hash recreated) counts as new from zero. Workers without the option are not counted, so each cycle
  also counts the `:completed`/`:failed` entries above the sample cursors (ZCOUNT, in the same snapshot) and
  takes the larger figure; when the sets gained more than the counters, the metrics are distrusted for good
  (Cursor.state) and "auto" moves the queue to events. With removeOnComplete=true that check sees nothing.
- "events": `completed`/`failed` entries of the `:events` stream after the last id counted (XRANGE, at most
  `events_per_cycle` entries per queue per cycle, the rest next cycle; O(events since the last cycle)).
  Retries emit no `failed` entry. The stream is trimmed to about `opts.maxLenEvents` (10000) entries: when
  more events happen between two cycles the oldest are lost and BullMQExtras.events_gap is set.
`throughput_source="auto"` uses metrics when the `:metrics:*` hashes exist, else events; "metrics" and "events"
force one. Switches happen between two cycles on counters and stream ids read in the same snapshot, so nothing
is counted twice. The resume state (source, counts, last event id) is Cursor.state: a restarted collector that
passes its stored cursors continues exactly (finishes while it was down are counted on its first cycle, unless
the stream was trimmed past its id); a queue read without a cursor is a baseline (new_* are 0).

First reads. `unseen=Cursor(0.0, 0.0)` (a new database's first cycle, or a queue that appeared since) counts
the finishes still held in Redis before the read, from one source for both counts: the `:completed` and
`:failed` sets, or the events stream or the metrics minutes when they show that a set was trimmed (rules in
collector/bullmq_recent.py). QueueReading.counted_since_s is the earliest end time among them (None when
nothing was counted); the resume state starts at the snapshot, so the next cycle counts from there.

Samples. `:completed`/`:failed` scores are finishedOn (epoch ms, the worker's clock). Cursor.finished_score and
failed_score are the highest scores read; each cycle reads the newest `sample_jobs` entries above them and
times the newest `sample_jobs` of both sets together (on a first read, of the span counted). Processing =
finishedOn - processedOn; wait = processedOn - (timestamp + delay), so a retried job's wait includes its
earlier attempts. Jobs removed on completion (`removeOnComplete`) cannot be sampled. Entries that land below
the cursor (a worker whose clock lags another's, or the same millisecond after the snapshot) are counted but
never sampled.

Timeouts (BullMQ has none of its own) follow `timeout_rule` (see TimeoutRule): from events, every new failure's
failedReason is judged (plus the stacktrace of sampled ones); otherwise the newest `sample_jobs` failures are
judged and scaled by new_failed / failures judged.

Oldest waiting (oldest_enqueued_at_s): the smallest `timestamp + delay` among the candidates for the oldest
job in any waiting list or priority: the job ids at both ends of `:wait` and of the old-style `:paused` list
(FIFO jobs age towards the tail, LIFO jobs towards the head) and the lowest member of each priority 1..10 of
`:prioritized` and of all higher priorities together (a priority's lowest score is the job that entered it
first). Limits: in a list mixing FIFO and LIFO jobs, or among priorities above 10, an older job in the middle
is not seen; a job that re-entered a list (retried, moved back from stalled) keeps its old timestamp.

BullMQExtras.throughput_source names where a reading's counts came from: "metrics" or "events", and on a first
read also "sets".

Memory: BullMQ records no worker pids; the collector attaches the memory the queuewatch agent reports for a
worker (collector/agents.py, matched by the worker's connection ids), so the reader declares no figure
unavailable.

Stalled: BullMQExtras.stalled counts active jobs (the first `sample_jobs`) whose `:lock` key is gone: their
worker died and the next stalled check will move them back to wait (or fail them with "job stalled more than
allowable limit").
"""
from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis

from collector.bullmq_discovery import LIBRARY, BullMQDiscovery, QueueRef
from collector.bullmq_layout import (
    NORMAL,
    BullMQLayout,
    CounterSnapshot,
    Throughput,
    ThroughputState,
    TimeoutRule,
    advance_throughput,
    events_start,
    ms_to_s,
    priority_tier,
)
from collector.bullmq_snapshot import Probe, QueueSnap, ask, enqueued_at_s, ok, parse
from core.model import Cursor, FinishedJob, JobFailure, QueueReading, RedisReading
from core.problems import ProblemLog
from collector.roundtrips import counting
from core.values import as_text

DEFAULT_SAMPLE_JOBS = 500
DEFAULT_HEAD_PROBE = 5
DEFAULT_SCAN_COUNT = 1000
DEFAULT_EVENTS_PER_CYCLE = 10_000
EMPTY_REGISTRY_CURSOR = 0.0
THROUGHPUT_SOURCES = ("auto", "metrics", "events")
BASELINE = Cursor()
UNAVAILABLE: frozenset[str] = frozenset()
"""QueueMetrics fields a BullMQ reading never measures: none (worker memory comes from agent reports)."""
JOB_FIELDS = ("timestamp", "delay", "processedOn", "finishedOn", "failedReason", "stacktrace", "name", "pb")
"""Job hash fields read for a sampled job (`pb`: the worker that processed it, BullMQ 5+)."""


@dataclass
class BullMQExtras:
    """What a BullMQ queue shows beyond QueueReading."""

    paused: bool
    priority_counts: dict[int, int]
    stalled: int
    prefix: str
    throughput_source: str = "events"
    events_gap: bool = False


class BullMQReader:
    """Reads BullMQ's state from one Redis without changing it."""

    library = LIBRARY

    def __init__(self, client: redis.Redis, *, prefixes: Sequence[str] = ("bull",),
                 sample_jobs: int = DEFAULT_SAMPLE_JOBS, timeout_rule: TimeoutRule | None = None,
                 throughput_source: str = "auto", events_per_cycle: int = DEFAULT_EVENTS_PER_CYCLE,
                 queues: Sequence[str] | None = None, scan_count: int = DEFAULT_SCAN_COUNT,
                 head_probe: int = DEFAULT_HEAD_PROBE, unprioritized_tier: int = NORMAL,
                 hostname: str | None = None, problems: ProblemLog | None = None, atomic: bool = True,
                 owns: Callable[[str], bool] | None = None, known: dict[str, set[str]] | None = None) -> None:
        if throughput_source not in THROUGHPUT_SOURCES:
            raise ValueError(f"throughput_source must be one of {THROUGHPUT_SOURCES}, not {throughput_source!r}")
        if not prefixes:
            raise ValueError("at least one prefix is needed")
        self.client = counting(client)
        self.atomic = atomic
        self.problems = problems or ProblemLog()
        self.layouts = [BullMQLayout(prefix) for prefix in dict.fromkeys(prefixes)]
        self.sample_jobs = max(0, sample_jobs)
        self.timeout_rule = timeout_rule or TimeoutRule()
        self.throughput_source = throughput_source
        self.events_per_cycle = max(1, events_per_cycle)
        self.head_probe = max(1, head_probe)
        self.unprioritized_tier = unprioritized_tier
        self.probe = Probe(self.sample_jobs, self.head_probe, self.events_per_cycle)
        self.discovery = BullMQDiscovery(
            self.client, self.layouts, queues=queues, scan_count=max(1, scan_count),
            hostname=hostname if hostname is not None else socket.gethostname(), problems=self.problems, owns=owns,
            known=known)
        self.last_extras: dict[str, BullMQExtras] = {}

    def read(self, cursors: Mapping[str, Cursor], *, unseen: Cursor = BASELINE) -> RedisReading:
        """One cycle: every queue's counts, finishes since its cursor, and every worker connection.

        `unseen` is the cursor of a queue missing from `cursors`: the default makes its reading a baseline;
        Cursor(0.0, 0.0) counts everything its counters, stream and sets hold (a queue that appeared since).
        """
        trips_before = self.client.round_trips
        if self.discovery.full_scan_due:
            self.discovery.full_scan()
        clients = self.discovery.discover()
        refs = self.discovery.refs(clients)
        read_at_s, snaps = self._snapshot([(ref, cursors.get(ref.name) or unseen) for ref in refs])
        snaps = [snap for snap in snaps
                 if self.discovery.keep(snap.ref, exists=snap.exists, is_job_hash=snap.is_job_hash)]
        head_times, jobs, locks = self._details(snaps)
        queues, extras = [], {}
        for snap in snaps:
            read = self.problems.guard(snap.ref.key("meta"), "queue",
                                       lambda snap=snap: self._queue_reading(snap, head_times, jobs, locks))
            if read is not None:
                queues.append(read[0])
                extras[snap.ref.name] = read[1]
        self.last_extras = extras
        workers = self.discovery.workers(clients, read_at_s)
        return RedisReading(read_at_s=read_at_s, queues=queues, workers=workers,
                            round_trips=self.client.round_trips - trips_before, unavailable=UNAVAILABLE)

    def _snapshot(self, plans: Sequence[tuple[QueueRef, Cursor]]) -> tuple[float, list[QueueSnap]]:
        """Round trip 2: one atomic snapshot of every queue, with TIME (a plain pipeline when `atomic` is off: a
        Redis Cluster node refuses MULTI over keys of several slots)."""
        pipe = self.client.pipeline(transaction=self.atomic)
        pipe.time()
        snaps = []
        for ref, cursor in plans:
            prev = ThroughputState.from_text(cursor.state)
            count_all = prev is None and cursor.finished_score == 0.0 and cursor.failed_score == 0.0
            snap = QueueSnap(ref, cursor, prev, events_start(prev, count_all=count_all,
                                                             source=self.throughput_source))
            snaps.append(snap)
            ask(pipe, snap, self.probe)
        replies = iter(pipe.execute(raise_on_error=False))
        seconds, micros = ok(next(replies), (0, 0))
        parsed = []
        for snap in snaps:
            own = iter([next(replies) for _ in range(snap.reply_count)])
            if self.problems.guard(snap.ref.key("meta"), "queue", lambda: parse(snap, own, self.problems) or True):
                parsed.append(snap)
        return int(seconds) + int(micros) / 1e6, parsed

    def _entries(self, snap: QueueSnap) -> list[tuple[float, str, bool]]:
        """(score, job id, failed) read above the cursors, newest first; on a first read, of the span counted."""
        since_ms = snap.recent.since_s * 1000.0 if snap.recent and snap.recent.since_s is not None else None
        entries = [(score, job_id, failed) for failed, top, cursor in zip((False, True), snap.tops, snap.scores)
                   if cursor is not None for job_id, score in top if since_ms is None or score >= since_ms]
        return sorted(entries, key=lambda entry: entry[0], reverse=True)

    def _picks(self, snap: QueueSnap) -> list[tuple[str, bool]]:
        """(job id, failed) of the newest `sample_jobs` entries of both sets together: the timed jobs."""
        return [(job_id, failed) for _, job_id, failed in self._entries(snap)[:self.sample_jobs]]

    def _judged(self, snap: QueueSnap) -> list[str]:
        """Ids of the newest `sample_jobs` failures: the failures judged by the timeout rule."""
        return [job_id for _, job_id, failed in self._entries(snap) if failed][:self.sample_jobs]

    def _details(self, snaps: Sequence[QueueSnap]):
        """Round trip 3: enqueue times of the oldest-waiting candidates, sampled job hashes, active jobs' locks."""
        heads = sorted({(snap.ref, job_id) for snap in snaps if snap.waiting for job_id in snap.waiting_ids},
                       key=lambda item: (item[0].name, item[1]))
        sampled = sorted({(snap.ref, job_id) for snap in snaps
                          for job_id in [job_id for job_id, _ in self._picks(snap)] + self._judged(snap)},
                         key=lambda item: (item[0].name, item[1]))
        active = [(snap.ref, job_id) for snap in snaps for job_id in snap.active_ids]
        if not heads and not sampled and not active:
            return {}, {}, {}
        pipe = self.client.pipeline(transaction=False)
        for ref, job_id in heads:
            pipe.hmget(ref.layout.job(ref.queue, job_id), ["timestamp", "delay"])
        for ref, job_id in sampled:
            pipe.hmget(ref.layout.job(ref.queue, job_id), list(JOB_FIELDS))
        for ref, job_id in active:
            pipe.exists(ref.layout.lock(ref.queue, job_id))
        replies = iter(pipe.execute(raise_on_error=False))
        head_times = {item: enqueued_at_s(ok(next(replies), [None, None])) for item in heads}
        jobs = {item: dict(zip(JOB_FIELDS, (as_text(v) for v in ok(next(replies), [])))) for item in sampled}
        locks = {item: bool(ok(next(replies), 1)) for item in active}
        return head_times, jobs, locks

    def _flow(self, snap: QueueSnap) -> tuple[Throughput, float | None]:
        """New finishes and the resume state; a first read counts the recent past (collector/bullmq_recent.py)."""
        counters = CounterSnapshot(snap.metrics, snap.latest_event_id,
                                   snap.events if snap.events_from is not None else None, snap.first_event_id,
                                   snap.set_gains)
        if snap.recent is None:
            return advance_throughput(snap.prev, counters, source=self.throughput_source, count_all=False,
                                      events_cap=self.events_per_cycle), None
        resume = advance_throughput(None, counters, source=self.throughput_source, count_all=False,
                                    events_cap=self.events_per_cycle)
        recent = snap.recent
        flow = Throughput(recent.finished, recent.failed, recent.failures, resume.state, recent.source)
        return flow, recent.since_s if recent.finished + recent.failed else None

    def _queue_reading(self, snap: QueueSnap, head_times: Mapping, jobs: Mapping,
                       locks: Mapping) -> tuple[QueueReading, BullMQExtras]:
        """Counts, oldest waiting job, new finishes and extras of one queue."""
        ref, counts = snap.ref, snap.counts
        flow, counted_since_s = self._flow(snap)
        cursors = [_next_cursor(top, score) for top, score in zip(snap.tops, snap.scores)]
        samples = [sample for job_id, failed in self._picks(snap)
                   if (sample := self._sample(job_id, jobs.get((ref, job_id)), failed))]
        sampled_failures = [sample for job_id in self._judged(snap)
                            if (sample := self._sample(job_id, jobs.get((ref, job_id)), True))]
        if flow.failures is not None:
            timeouts = sum(1 for job_id, reason in flow.failures
                           if self.timeout_rule.matches(reason, (jobs.get((ref, job_id)) or {}).get("stacktrace")))
        else:
            timeouts = sum(1 for job in sampled_failures if job.timed_out)
            if sampled_failures and flow.failed > len(sampled_failures):
                timeouts = round(timeouts * flow.failed / len(sampled_failures))
            timeouts = min(timeouts, flow.failed)
        starts = [head_times.get((ref, job_id)) for job_id in snap.waiting_ids]
        known_starts = [at_s for at_s in starts if at_s is not None]
        priority_counts = {tier: count for tier, count in snap.tiers.items()}
        unprioritized = counts["wait"] + counts["paused"]
        tier = priority_tier(0, unprioritized=self.unprioritized_tier)
        priority_counts[tier] = priority_counts.get(tier, 0) + unprioritized
        reading = QueueReading(
            queue_name=ref.name, library=LIBRARY,
            waiting=counts["wait"] + counts["paused"] + counts["prioritized"], active=counts["active"],
            scheduled=counts["delayed"], deferred=counts["waiting-children"], failed=counts["failed"],
            completed=counts["completed"], oldest_enqueued_at_s=min(known_starts) if known_starts else None,
            cursor=Cursor(finished_score=cursors[0], failed_score=cursors[1], state=flow.state.to_text()),
            new_finished=flow.finished, new_failed=flow.failed, new_timeouts=timeouts, sampled_jobs=samples,
            counted_since_s=counted_since_s, unavailable=frozenset(snap.unavailable))
        stalled = sum(1 for job_id in snap.active_ids if not locks.get((ref, job_id), True))
        extras = BullMQExtras(paused=snap.paused, priority_counts=priority_counts, stalled=stalled,
                              prefix=ref.layout.prefix, throughput_source=flow.source, events_gap=flow.events_gap)
        reading.details = dataclasses.asdict(extras)
        return reading, extras

    def _sample(self, job_id: str, fields: Mapping[str, str | None] | None, failed: bool) -> FinishedJob | None:
        """A finished job with its times; None when its hash is gone."""
        if not fields or all(value is None for value in fields.values()):
            return None
        timed_out = failed and self.timeout_rule.matches(fields.get("failedReason"), fields.get("stacktrace"))
        failure = JobFailure(name=fields.get("name") or None, worker=fields.get("pb") or None,
                             error_text=last_stack(fields.get("stacktrace")),
                             reason=fields.get("failedReason")) if failed else None
        job = FinishedJob(job_id=job_id, failed=failed, timed_out=timed_out,
                          enqueued_at_s=enqueued_at_s([fields.get("timestamp"), fields.get("delay")]),
                          started_at_s=ms_to_s(fields.get("processedOn")),
                          ended_at_s=ms_to_s(fields.get("finishedOn")), failure=failure)
        if any(value is None and fields.get(name) not in (None, "", "0") for value, name in (
                (job.enqueued_at_s, "timestamp"), (job.started_at_s, "processedOn"), (job.ended_at_s, "finishedOn"))):
            self.problems.report(f"job {job_id}", "a timestamp, processedOn or finishedOn time is not usable; that "
                                 "job's wait or run time is unavailable")
        return job




def _next_cursor(top: Sequence[tuple[str, float]], score: float | None) -> float:
    """The highest score seen in a set: the newest entry read, else the cursor it was read above."""
    if score is None:
        return top[0][1] if top else EMPTY_REGISTRY_CURSOR
    return max(score, top[0][1]) if top else score


def last_stack(stacktrace: str | None) -> str | None:
    """The newest attempt's stack of a job hash's `stacktrace` field (a JSON list of strings), else the text."""
    if not stacktrace:
        return None
    try:
        stacks = json.loads(stacktrace)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to decode: kept as text
        return stacktrace
    if isinstance(stacks, list):
        texts = [item for item in stacks if isinstance(item, str) and item]
        return texts[-1] if texts else None
    return stacktrace
