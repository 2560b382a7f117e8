"""The demo's BullMQ part for real but briefly (bullmq workers and producer); the producer without Redis."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis

from collector.bullmq_layout import PRIORITY_SCORE_STEP, TIERS, TimeoutRule
from queuewatch.demo.bullmq_workload import (
    BULLMQ_PROFILES,
    BULLMQ_QUEUES,
    BULLMQ_WORKERS,
    PAUSED_QUEUE,
    BullMQConfig,
    BullMQWorkload,
    worker_argv,
)
from queuewatch.demo.embedded_redis import EmbeddedRedis
from queuewatch.demo.processes import DemoProcesses
from tests.demo.helpers import alive

RUN_S = 18.0
KEEP_COMPLETED = 5
CONFIG = BullMQConfig(keep_completed=KEEP_COMPLETED, pause_after_s=3.0, pause_for_s=6.0, delayed_pct=20.0,
                      max_delay_s=6.0)


def _failures(client: redis.Redis, queue: str) -> list[tuple[str, str]]:
    """(failedReason, stacktrace) of the failed jobs still kept in a queue's failed set."""
    found = []
    for job_id in client.zrange(f"bull:{queue}:failed", 0, -1):
        reason, stacktrace = client.hmget(f"bull:{queue}:{job_id}", "failedReason", "stacktrace")
        found.append((reason or "", stacktrace or ""))
    return found


def test_bullmq_workers_and_producer_run_real_jobs_and_leave_nothing_behind(tmp_path):
    seen_pids: set[int] = set()
    priorities: set[int] = set()
    peak = {"delayed": 0, "paused": 0, "paused_waiting": 0}
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        with DemoProcesses(tmp_path / "logs") as processes:
            processes.start_bullmq(server.url, CONFIG)
            deadline_s = time.monotonic() + RUN_S
            worker_clients: set[str] = set()
            while time.monotonic() < deadline_s:
                seen_pids |= processes.pids()
                for queue in BULLMQ_QUEUES:
                    scores = client.zrange(f"bull:{queue}:prioritized", 0, -1, withscores=True)
                    priorities |= {int(score // PRIORITY_SCORE_STEP) for _, score in scores}
                    peak["delayed"] = max(peak["delayed"], client.zcard(f"bull:{queue}:delayed"))
                if client.hexists(f"bull:{PAUSED_QUEUE}:meta", "paused"):
                    peak["paused"] = 1
                    waiting = client.llen(f"bull:{PAUSED_QUEUE}:paused") + client.zcard(
                        f"bull:{PAUSED_QUEUE}:prioritized")
                    peak["paused_waiting"] = max(peak["paused_waiting"], waiting)
                worker_clients |= {entry["name"] for entry in client.client_list()
                                   if ":w:demo-bullmq-" in entry["name"]}
                time.sleep(0.1)
            assert processes.dead() == [], [child.log_tail() for child in processes.dead()]
            assert len(seen_pids) >= len(BULLMQ_WORKERS) + 1

        completed = {queue: int(client.hget(f"bull:{queue}:metrics:completed", "count") or 0)
                     for queue in BULLMQ_QUEUES}
        failed = {queue: int(client.hget(f"bull:{queue}:metrics:failed", "count") or 0)
                  for queue in BULLMQ_QUEUES}
        kept = {queue: client.zcard(f"bull:{queue}:completed") for queue in BULLMQ_QUEUES}
        failures = {queue: _failures(client, queue) for queue in BULLMQ_QUEUES}
        still_paused = client.hexists(f"bull:{PAUSED_QUEUE}:meta", "paused")
        client.close()

    rule = TimeoutRule()
    for queue in BULLMQ_QUEUES:
        assert completed[queue] >= 10, completed
        assert kept[queue] <= KEEP_COMPLETED < completed[queue], "removeOnComplete did not trim"
        assert failed[queue] == len(failures[queue]) >= 2
        timeouts = [stacktrace for reason, stacktrace in failures[queue] if rule.matches(reason, stacktrace)]
        assert timeouts, failures[queue]
        assert len(timeouts) < len(failures[queue]), "no ordinary failure"
        assert all("TimeoutError" in stacktrace for stacktrace in timeouts)
    assert set(TIERS) <= priorities
    assert peak["delayed"] >= 1
    assert peak["paused"] and peak["paused_waiting"] >= 1
    assert not still_paused, "the paused queue was not resumed"
    assert {name.split(":w:")[0] for name in worker_clients} == {f"bull:{queue}" for queue in BULLMQ_QUEUES}
    assert [pid for pid in seen_pids if alive(pid)] == []


class _RecordingQueue:
    """Stands in for bullmq.Queue: records what the producer adds, pauses and resumes."""

    def __init__(self, name: str, calls: list[tuple]) -> None:
        self.name = name
        self.calls = calls

    async def add(self, name: str, data: dict, opts: dict) -> None:
        self.calls.append(("add", self.name, name, data, opts))

    async def pause(self) -> None:
        self.calls.append(("pause", self.name))

    async def resume(self) -> None:
        self.calls.append(("resume", self.name))


def _produce(seed: int, until_s: float, config: BullMQConfig | None = None) -> list[tuple]:
    calls: list[tuple] = []
    queues = {name: _RecordingQueue(name, calls) for name in BULLMQ_QUEUES}
    workload = BullMQWorkload(queues, config or BullMQConfig(seed=seed), log=lambda line: None)

    async def go() -> None:
        await workload.kickoff()
        elapsed_s = 0.0
        while elapsed_s < until_s:
            elapsed_s += 0.25
            await workload.step(elapsed_s)

    asyncio.run(go())
    return calls


def test_bullmq_producer_is_seeded_and_covers_tiers_delays_outcomes_and_the_pause():
    assert _produce(3, 60) == _produce(3, 60)
    assert _produce(3, 60) != _produce(4, 60)
    calls = _produce(5, 400, BullMQConfig(seed=5, pause_after_s=45, pause_for_s=20, pause_every_s=180))
    adds = [call for call in calls if call[0] == "add"]
    assert {opts.get("priority", 0) for *_, opts in adds} == {0, *TIERS}
    assert sum(1 for *_, opts in adds if opts.get("delay")) >= 10
    assert all(opts["removeOnComplete"] == BullMQConfig().keep_completed for *_, opts in adds)
    toggles = [call for call in calls if call[0] in ("pause", "resume")]
    assert toggles == [("pause", PAUSED_QUEUE), ("resume", PAUSED_QUEUE)] * 2
    timeouts = {profile.name: profile.job_timeout_s for profile in BULLMQ_PROFILES}
    late = [data for _, _, name, data, _ in adds if data["work_ms"] > timeouts[name] * 1000]
    assert late and all(data["timeout_s"] == timeouts[name] for _, _, name, data, _ in adds)
    assert any(data["fail"] for *_, data, _ in adds)


@pytest.mark.parametrize("spec", BULLMQ_WORKERS)
def test_bullmq_worker_command_lines(spec):
    argv = worker_argv(spec, "redis://127.0.0.1:6390/0", "demo-x")
    assert argv[1:4] == ["-m", "queuewatch.demo.bullmq_workload", "worker"]
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--queue"] == list(spec.queues)
    assert argv[argv.index("--name") + 1] == "demo-x"
