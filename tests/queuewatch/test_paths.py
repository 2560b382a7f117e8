"""Paths mean what the user typed: relative SQLite paths from the starting directory, a default outside the code."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from config.settings import absolute_db_url, default_db_url, load_settings
from tests.conftest import REPO_ROOT, free_port


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "queuewatch.cli", *args], cwd=cwd, capture_output=True, text=True,
                          input=stdin, timeout=60, env={**os.environ, **(env or {})})


def _user_emails(db_path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute("SELECT email FROM users")]


def test_a_relative_sqlite_path_is_relative_to_the_starting_directory_for_every_command(tmp_path):
    start = tmp_path / "here"
    start.mkdir()
    added = _cli(start, "users", "add", "ops@example.com", "--password-stdin", "--db", "sqlite:///rel/q.db",
                 stdin="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert _user_emails(start / "rel" / "q.db") == ["ops@example.com"]
    listed = _cli(start, "users", "list", "--db", "sqlite:///rel/q.db")
    assert "ops@example.com" in listed.stdout
    exported = _cli(start, "export", "--out", "out.csv", "--kind", "alerts", "--db", "sqlite:///rel/q.db")
    assert exported.returncode == 0 and (start / "out.csv").exists()
    collected = _cli(start, "collect", "--once", "--redis", f"redis://127.0.0.1:{free_port()}/0",
                     "--db", "sqlite:///coll.db")
    assert collected.returncode == 1 and (start / "coll.db").exists()  # the outage is recorded there
    assert not (REPO_ROOT / "rel").exists() and not (REPO_ROOT / "coll.db").exists()


def test_the_dashboard_gets_the_absolute_path_although_streamlit_runs_in_the_checkout(tmp_path):
    start = tmp_path / "here"
    start.mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "queuewatch.cli", "dashboard", "--port", str(port),
                             "--db", "sqlite:///rel.db"], cwd=start, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "dashboard did not start"
            time.sleep(0.2)
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{proc.pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert environ["QUEUEWATCH_DB_URL"] == f"sqlite:///{start / 'rel.db'}"
        assert Path(f"/proc/{proc.pid}/cwd").resolve() == REPO_ROOT  # where Streamlit finds its pages
        assert (start / "rel.db").exists() and not (REPO_ROOT / "rel.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_default_database_is_under_xdg_data_home(tmp_path):
    start = tmp_path / "anywhere"
    start.mkdir()
    data_home = tmp_path / "xdg"
    added = _cli(start, "users", "add", "a@example.com", "--password-stdin", stdin="correct horse\n",
                 env={"XDG_DATA_HOME": str(data_home), "QUEUEWATCH_DB_URL": ""})
    assert added.returncode == 0, added.stderr
    assert _user_emails(data_home / "queuewatch" / "queuewatch.db") == ["a@example.com"]
    assert list(start.iterdir()) == []


def test_without_xdg_data_home_the_default_is_under_the_home_folder(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("XDG_DATA_HOME", "QUEUEWATCH_DB_URL")}
    env["HOME"] = str(tmp_path / "home")
    added = subprocess.run([sys.executable, "-m", "queuewatch.cli", "users", "add", "b@example.com",
                            "--password-stdin"], cwd=tmp_path, input="correct horse\n", capture_output=True,
                           text=True, timeout=60, env=env)
    assert added.returncode == 0, added.stderr
    assert _user_emails(tmp_path / "home" / ".local" / "share" / "queuewatch" / "queuewatch.db") == ["b@example.com"]


@pytest.mark.parametrize("url,expected", [
    ("sqlite:///rel.db", "sqlite:////start/rel.db"),
    ("sqlite:///../up/q.db", "sqlite:////start/../up/q.db"),
    ("sqlite:////abs/q.db", "sqlite:////abs/q.db"),
    ("sqlite://", "sqlite://"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql://u:pw@db/q", "postgresql://u:pw@db/q"),
])
def test_absolute_db_url(url, expected):
    assert absolute_db_url(url, Path("/start")) == expected


def test_default_db_url_ignores_a_relative_xdg_data_home():
    assert default_db_url({"XDG_DATA_HOME": "rel"}) == f"sqlite:///{Path.home()}/.local/share/queuewatch/queuewatch.db"
    assert load_settings(env={"XDG_DATA_HOME": "/d"}).db_url == "sqlite:////d/queuewatch/queuewatch.db"
