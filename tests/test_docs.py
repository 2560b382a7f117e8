"""The README documents every setting, command and option (fails when one is added without docs)."""
from __future__ import annotations

import argparse

import pytest

from queuewatch.cli import build_parser
from config.settings import SETTINGS
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented(setting):
    assert f"`{setting.env}`" in README
    assert f"| {setting.name} |" in README


def _subcommands(parser=None, prefix="queuewatch"):
    """(command line, parser) of every command and nested subcommand."""
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub))
                found.extend(_subcommands(sub, f"{prefix} {name}"))
    return found


@pytest.mark.parametrize("name,parser", _subcommands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_and_option_is_documented(name, parser):
    assert name in README
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert option in README, f"{name} {option} is not in README.md"
        assert action.help, f"{name} {action.option_strings} has no help"
