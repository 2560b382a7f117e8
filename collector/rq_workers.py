"""RQ workers as the workers set and each worker's hash register them; no I/O beyond the pid check."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.rq_layout import RQLayout, job_id_of_execution, parse_timestamp_s
from core.model import WorkerReading
from core.problems import HashFields, ProblemLog
from core.values import NAME_MAX, PID_MAX, as_name, as_text

LIBRARY = "rq"
STALE_STATE = "stale"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class WorkerSource:
    """What judging a worker needs: key layout, problem log, staleness limit, this host, a pid check."""

    layout: RQLayout
    problems: ProblemLog
    stale_after_s: float
    hostname: str
    pid_alive: Callable[[int], bool] | None


def worker_reading(source: WorkerSource, key: str, hash_reply: Mapping[Any, Any], executions: Any,
                   read_at_s: float) -> WorkerReading | None:
    """One registered worker; a gone, dead, silent or vanished-process worker is stale, never alive.

    A malformed pid, host, time or state is unavailable (None); a worker whose job counts are malformed is
    skipped, since its row has no way to show an unknown count.
    """
    data = {as_text(k, 64) or "": v for k, v in (hash_reply if isinstance(hash_reply, Mapping) else {}).items()}
    fields = HashFields(source.problems, key, data)
    successful, failed = fields.count("successful_job_count"), fields.count("failed_job_count")
    if successful is None or failed is None:
        source.problems.report(key, "job counts are not usable; the worker is not stored this cycle")
        return None
    pid = fields.number("pid", high=PID_MAX, low=1)
    hostname = fields.name("hostname")
    last_heartbeat_s = fields.time("last_heartbeat", parse_timestamp_s)
    alive = (bool(data) and "death" not in data and last_heartbeat_s is not None
             and read_at_s - last_heartbeat_s <= source.stale_after_s)
    if alive and pid and source.pid_alive is not None and hostname and hostname == source.hostname:
        alive = source.pid_alive(pid)
    running = sorted(job_id for job_id in (as_name(job_id_of_execution(member)) for member in
                                           (executions if isinstance(executions, (set, list)) else ())) if job_id)
    queues = [q for q in (fields.text("queues", 64 * NAME_MAX) or "").split(",") if as_name(q)]
    return WorkerReading(
        name=source.layout.worker_name(key), library=LIBRARY, queues=queues, pid=pid, hostname=hostname,
        state=(fields.name("state", 32) or "?") if alive else STALE_STATE, alive=alive,
        successful_jobs=successful or 0, failed_jobs=failed or 0,
        birth_at_s=fields.time("birth", parse_timestamp_s), last_heartbeat_at_s=last_heartbeat_s,
        current_job_id=fields.name("current_job") or (running[0] if running else None),
    )
