"""The house's floors: each package imports only the ones below it (checked from the source's import lines)."""
from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import REPO_ROOT

PROJECT = ("core", "config", "storage", "accounts", "collector", "api", "dashboard", "queuewatch",
           "queuewatch_agent", "pages", "app")
# What each package may import of the project's own packages (besides itself).
ALLOWED = {
    "core": set(),
    "config": {"core"},
    "storage": {"core"},
    "accounts": {"core", "config", "storage"},
    "queuewatch_agent": set(),
    "collector": {"core", "config", "storage", "queuewatch_agent"},
    "api": {"core", "config", "storage", "accounts"},
    "dashboard": {"core", "config", "storage", "accounts"},
    "pages": {"core", "config", "storage", "accounts", "dashboard"},
    "app": {"core", "config", "storage", "accounts", "dashboard"},
}
# Single modules allowed one floor more than their package, each for a stated reason.
MODULE_EXCEPTIONS = {
    "dashboard/job_lookup.py": {"collector"},  # the job lookup reads Redis live with the collector's key layouts
}
FORBIDDEN_THIRD_PARTY = {
    "core": {"redis", "sqlalchemy", "streamlit", "pandas", "plotly", "fastapi", "psutil"},
    "storage": {"streamlit", "redis"},
}


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str):
    if package == "app":
        return [REPO_ROOT / "app.py"]
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_lies_below_it(package):
    for path in _sources(package):
        imported = _imports(path)
        own = (imported & set(PROJECT)) - {package}
        allowed = ALLOWED[package] | MODULE_EXCEPTIONS.get(str(path.relative_to(REPO_ROOT)), set())
        assert own <= allowed, f"{path.relative_to(REPO_ROOT)} imports {sorted(own - allowed)}"
        banned = imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        assert not banned, f"{path.relative_to(REPO_ROOT)} imports {sorted(banned)}"


def test_pages_hold_no_queries():
    for path in _sources("pages"):
        assert not _imports(path) & {"sqlalchemy"}, path
        assert not re.search(r"(?<![\w.])select\(|\.execute\(", path.read_text()), path
