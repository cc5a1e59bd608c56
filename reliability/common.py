"""What every scenario shares: how servers are started, and the row a scenario reports."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("http", "flask", "fastapi")
#: Quick direct-put retries (the real schedule is 1, 2, 4 s); a hop slower than 1 s times out.
BASE_ENV = {
    "PYTHONPATH": str(REPO),
    "AISETL_RETRY_BACKOFF": "0.01",
    "AISETL_HOP_READ_TIMEOUT": "1",
}


def serve_argv(spec: str, framework: str, *extra: str) -> list[str]:
    """``aisetl serve`` on an ephemeral port: what a container runs."""
    return [
        sys.executable, "-m", "aisetl", "serve", spec, "--server", framework,
        "--host", "127.0.0.1", "--port", "{port}", *extra,
    ]  # fmt: skip


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    server: str
    tried: str  # what was done, and how much
    result: str  # what was measured
    held: bool
    problems: tuple[str, ...] = ()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def open_fds(pid: int) -> int:
    """Open file descriptors of a process and its workers."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):  # a worker that just exited
            total += len(os.listdir(f"/proc/{member}/fd"))
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its workers."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
