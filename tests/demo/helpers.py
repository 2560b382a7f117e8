"""Process and output helpers shared by the demo tests."""
from __future__ import annotations

import io
import threading

import psutil


def running(proc: psutil.Process) -> bool:
    """Whether a process still runs (a zombie does not)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(pid: int) -> bool:
    """Whether the process with this id still runs."""
    try:
        return running(psutil.Process(pid))
    except psutil.Error:
        return False


def demo_children_of(pid: int, marker: str) -> list[psutil.Process]:
    """Running descendants of `pid` whose command line contains `marker`."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if running(proc) and marker in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


class Output(io.StringIO):
    """stdout stand-in that tells when the banner has been printed."""

    def __init__(self) -> None:
        super().__init__()
        self.banner = threading.Event()

    def write(self, text: str) -> int:
        if "Press Ctrl-C to stop" in text:
            self.banner.set()
        return super().write(text)
