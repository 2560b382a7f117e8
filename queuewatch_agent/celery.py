"""Celery: `import queuewatch_agent.celery` in the app module, or `queuewatch_agent.celery.install(app)`.

Both the worker's main process and, with the prefork pool, each pool child report:
- the main process as `<nodename>` (role "main"), jobs = tasks the worker accepted (all children together);
- each child as `<nodename>/<pid>` (role "child", parent_id = nodename), jobs = tasks that child ran. Children
  are where tasks run and where leaks grow; `--max-tasks-per-child` replaces them, and a replaced child is a
  new report (new pid, counters from 0) while the old one expires.
With the solo, threads or gevent pools there are no children: the main process reports everything.
The Redis is QUEUEWATCH_AGENT_REDIS_URL, else the broker when it is Redis.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

from celery import current_app, signals
from celery.worker import state as worker_state

from queuewatch_agent.agent import Agent, AgentConfig, client_from_url

log = logging.getLogger("queuewatch_agent")

LIBRARY = "celery"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass
class _Hook:
    """What the signal handlers share within one process (copied into forked children)."""

    app: Any = None
    config: AgentConfig | None = None
    nodename: str | None = None
    queues: tuple[str, ...] = ()
    agent: Agent | None = None
    running_tasks: int = 0


_hook = _Hook()


def install(app: Any = None, config: AgentConfig | None = None) -> None:
    """Connect the agent to Celery's worker signals (idempotent); `config` overrides the environment."""
    if app is not None:
        _hook.app = app
    if config is not None:
        _hook.config = config
    for signal, handler in ((signals.celeryd_after_setup, _on_after_setup), (signals.worker_ready, _on_ready),
                            (signals.worker_process_init, _on_process_init),
                            (signals.task_prerun, _on_task_prerun), (signals.task_postrun, _on_task_postrun),
                            (signals.worker_process_shutdown, _stop), (signals.worker_shutdown, _stop)):
        signal.connect(handler, weak=False, dispatch_uid=f"queuewatch_agent.{handler.__name__}")


def broker_redis_url(app: Any) -> str | None:
    """The app's broker URL when the broker is Redis (first of a failover list), else None."""
    url = getattr(app.conf, "broker_url", None)
    if isinstance(url, (list, tuple)):
        url = url[0] if url else None
    url = str(url).split(";")[0].strip() if url else ""
    return url if url.startswith(REDIS_SCHEMES) else None


def _config(app: Any) -> AgentConfig | None:
    config = _hook.config or AgentConfig.from_env()
    if not config.enabled:
        return None
    if config.redis_url is None:
        url = broker_redis_url(app)
        if url is None:
            log.warning("queuewatch agent off: no Redis broker and no QUEUEWATCH_AGENT_REDIS_URL")
            return None
        config = replace(config, redis_url=url)
    return config


def _queues(app: Any) -> tuple[str, ...]:
    try:
        return tuple(sorted(app.amqp.queues.consume_from))
    except Exception:
        return ()


def _start(app: Any, worker_id: str, **options: Any) -> None:
    try:
        config = _config(app)
        if config is None:
            return
        agent = Agent(LIBRARY, worker_id, _hook.queues or _queues(app), config=config,
                      client=client_from_url(config.redis_url or ""), **options)
        _hook.agent = agent.start()
    except Exception as exc:
        log.warning("queuewatch agent not started for Celery worker %s: %s", worker_id, exc)


def _on_after_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Main process, before the pool starts: remember the node name and the queues of `-Q`."""
    _hook.nodename = str(sender) if sender else _hook.nodename
    if instance is not None:
        _hook.app = _hook.app or instance.app
        _hook.queues = _queues(instance.app)


def _on_ready(sender: Any = None, **_: Any) -> None:
    """Main process, consumer ready: report the main process."""
    app = _hook.app or getattr(sender, "app", None) or current_app
    nodename = _hook.nodename or str(getattr(sender, "hostname", None) or f"celery@{os.uname().nodename}")
    _hook.nodename = nodename
    _start(app, nodename, role="main", jobs_fn=lambda: worker_state.all_total_count[0],
           state_fn=lambda: "busy" if worker_state.active_requests or _hook.running_tasks else "idle")


def _on_process_init(sender: Any = None, **_: Any) -> None:
    """A prefork pool child: report it on its own (the main process's agent thread was not copied here)."""
    _hook.agent, _hook.running_tasks = None, 0
    nodename = str(sender or _hook.nodename or f"celery@{os.uname().nodename}")
    _start(_hook.app or current_app, f"{nodename}/{os.getpid()}", role="child", parent_id=nodename,
           state_fn=lambda: "busy" if _hook.running_tasks else "idle")


def _on_task_prerun(**_: Any) -> None:
    _hook.running_tasks += 1


def _on_task_postrun(state: Any = None, **_: Any) -> None:
    _hook.running_tasks = max(0, _hook.running_tasks - 1)
    agent = _hook.agent
    if agent is not None and agent.running:
        agent.record_job(failed=state == "FAILURE")


def _stop(**_: Any) -> None:
    """Worker or child shutdown: stop this process's agent and remove its report."""
    agent = _hook.agent
    if agent is not None and agent.running:
        agent.stop()


install()
