"""RQ: a worker class (`rq worker --worker-class queuewatch_agent.rq.MonitoredWorker`) or `enable(worker)`.

The agent runs in the worker's main process and reports that process. With the forking `Worker` each job runs
in a short-lived work horse, whose memory shows in the report's `children_rss_mb` while a job runs; with
`SimpleWorker` jobs run in the reported process itself.
"""
from __future__ import annotations

import logging
from typing import Any

from rq import SimpleWorker, Worker
from rq.job import Job, JobStatus

from queuewatch_agent.agent import Agent, AgentConfig, client_from_url, client_like

log = logging.getLogger("queuewatch_agent")

LIBRARY = "rq"
_AGENT_ATTR = "_queuewatch_agent"


def _state(worker: Any) -> str:
    try:
        state = worker.get_state()
        return str(getattr(state, "value", state))
    except Exception:
        return "?"


def start_agent(worker: Any, config: AgentConfig | None = None) -> Agent | None:
    """Start publishing for a registered worker (after `bootstrap`); None when disabled or on error."""
    try:
        config = config or AgentConfig.from_env()
        if not config.enabled:
            return None
        client = client_from_url(config.redis_url) if config.redis_url else client_like(worker.connection)
        birth = getattr(worker, "birth_date", None)
        agent = Agent(LIBRARY, worker.name, worker.queue_names(), config=config, client=client,
                      started_at_s=birth.timestamp() if birth is not None else None,
                      state_fn=lambda: _state(worker))
        setattr(worker, _AGENT_ATTR, agent)
        return agent.start()
    except Exception as exc:
        log.warning("queuewatch agent not started for RQ worker: %s", exc)
        return None


def stop_agent(worker: Any) -> None:
    """Stop the worker's agent and remove its report (in the process that started it only)."""
    agent = getattr(worker, _AGENT_ATTR, None)
    if agent is not None and agent.running:
        agent.stop()


def _count_job(worker: Any, job: Job, before: tuple[int, int]) -> None:
    """Record one executed job, failed or not, in the worker's agent."""
    agent = getattr(worker, _AGENT_ATTR, None)
    if agent is None or not agent.running:
        return
    try:
        if worker.successful_job_count > before[0]:
            failed = False
        elif worker.failed_job_count > before[1]:
            failed = True
        else:  # forking worker: the work horse recorded the outcome in Redis
            failed = job.get_status(refresh=True) == JobStatus.FAILED
    except Exception:
        failed = False
    agent.record_job(failed=failed)


class _Monitored:
    """Worker methods that start, feed and stop the agent around RQ's own."""

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        start_agent(self)

    def execute_job(self, job: Job, queue: Any) -> Any:
        before = (self.successful_job_count, self.failed_job_count)  # type: ignore[attr-defined]
        try:
            return super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            _count_job(self, job, before)

    def teardown(self) -> None:
        stop_agent(self)
        super().teardown()  # type: ignore[misc]


class MonitoredWorker(_Monitored, Worker):
    """rq.Worker (a work horse per job) with the queuewatch agent."""


class MonitoredSimpleWorker(_Monitored, SimpleWorker):
    """rq.SimpleWorker (jobs in the worker process) with the queuewatch agent."""


def enable(worker: Any, config: AgentConfig | None = None) -> Any:
    """Add the agent to an existing worker instance before `worker.work()`; returns the worker."""
    bootstrap, execute_job, teardown = worker.bootstrap, worker.execute_job, worker.teardown

    def monitored_bootstrap(*args: Any, **kwargs: Any) -> None:
        bootstrap(*args, **kwargs)
        start_agent(worker, config)

    def monitored_execute_job(job: Job, queue: Any) -> Any:
        before = (worker.successful_job_count, worker.failed_job_count)
        try:
            return execute_job(job, queue)
        finally:
            _count_job(worker, job, before)

    def monitored_teardown() -> None:
        stop_agent(worker)
        teardown()

    worker.bootstrap, worker.execute_job, worker.teardown = (
        monitored_bootstrap, monitored_execute_job, monitored_teardown)
    return worker
