"""Helpers of the agent tests: the job module, worker environments, a collector and its worker rows."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import redis
from sqlalchemy import select

from core.health import Thresholds
from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage.schema import worker_snapshots
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
PERIOD_S = 0.3
COLLECTOR_HOST = "collector-host"
JOBS_MODULE = '''
"""Jobs for the agent tests."""
HELD = []


def hold_mb(mb):
    """Allocate `mb` MB of touched memory and keep it (an in-process leak)."""
    HELD.append(b"\\x01" * (mb * 1024 * 1024))


def noop():
    """Do nothing."""
'''


def agent_env(redis_url: str, module_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(module_dir), str(REPO_ROOT)]),
            "QUEUEWATCH_AGENT_PERIOD_S": str(PERIOD_S), "QW_TEST_REDIS_URL": redis_url, **extra}


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def collector(redis_url: str, db_url: str, *, agents: bool = True, thresholds: Thresholds | None = None,
              engine=None) -> Collector:
    from storage.engine import make_engine

    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, thresholds=thresholds)
    reader = RQReader(redis.Redis.from_url(redis_url), settle_s=0, hostname=COLLECTOR_HOST)
    return Collector(settings, engine or make_engine(db_url), reader, hostname=COLLECTOR_HOST,
                     agents_client=redis.Redis.from_url(redis_url) if agents else None)


def latest_row(engine, worker_name: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(worker_snapshots).where(worker_snapshots.c.worker_name == worker_name)
                           .order_by(worker_snapshots.c.id.desc()).limit(1)).mappings().first()
    assert row is not None, f"no row for {worker_name}"
    return dict(row)
