"""queuewatch agent: worker processes publish their memory and job counts to Redis for the collector.

Depends on `redis` and `psutil` only; the library hooks import their library when imported:
`queuewatch_agent.rq`, `queuewatch_agent.celery`, `queuewatch_agent.bullmq`.
"""
from __future__ import annotations

from queuewatch_agent.agent import Agent, AgentConfig
from queuewatch_agent.report import DEFAULT_PREFIX, AgentReport, index_key, report_key

__all__ = ["DEFAULT_PREFIX", "Agent", "AgentConfig", "AgentReport", "index_key", "report_key"]
