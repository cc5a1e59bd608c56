"""Notice at once when a server started for a run dies, or loses a worker process."""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

from aisetl.target import ServerProcess

#: Lines of a server's log quoted when it dies.
LOG_LINES = 15
#: Bytes of new log read per check (a server that floods its log is still watched).
_READ_LIMIT = 1 << 20
#: Worker deaths as the supervisors log them: gunicorn's arbiter and aisetl's pre-fork one.
_GUNICORN_EXIT = re.compile(r"Worker \(pid:(\d+)\) exited with code (\d+)")
_GUNICORN_SIGNAL = re.compile(r"Worker \(pid:(\d+)\) was sent (SIG\w+)!")
_AISETL_EXIT = re.compile(r"worker (\d+) exited \(status (\d+)\)")


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL (out of memory?)``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")


def worker_death(text: str) -> tuple[int, int] | None:
    """``(pid, exit code)`` of the first worker death in ``text`` (negative: a signal)."""
    found: list[tuple[int, int, int]] = []
    for match in _GUNICORN_EXIT.finditer(text):
        found.append((match.start(), int(match[1]), int(match[2])))
    for match in _GUNICORN_SIGNAL.finditer(text):
        number = getattr(signal, match[2], None)
        code = -int(number) if number is not None else -1
        found.append((match.start(), int(match[1]), code))
    for match in _AISETL_EXIT.finditer(text):
        found.append((match.start(), int(match[1]), os.waitstatus_to_exitcode(int(match[2]))))
    if not found:
        return None
    _, pid, code = min(found)
    return pid, code


def log_tail(process: ServerProcess, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines the server printed."""
    return "\n".join(process.log(64 * 1024).strip().splitlines()[-lines:])


@dataclass
class Death:
    """A server (or one of its worker processes) that died during the run."""

    label: str  # how the user knows the server: "path/server.py:Cls" or "stage 2 of 3 (...)"
    what: str  # "exited with code 3", "was killed by SIGKILL (out of memory?)"
    worker: int = 0  # the worker's PID when only a worker died
    log: str = ""

    def message(self) -> str:
        """One line naming the server and how it died."""
        if self.worker:
            return (
                f"server {self.label}: its worker process {self.worker} {self.what} "
                "(objects in flight there were lost)"
            )
        return f"server {self.label} {self.what}"


def settle(watch: ServerWatch, seconds: float = 1.0) -> Death | None:
    """:meth:`ServerWatch.check` until a death shows or ``seconds`` pass (a dying process may
    take a moment to exit, and its supervisor to log it)."""
    deadline = time.monotonic() + seconds
    while True:
        death = watch.check()
        if death is not None or time.monotonic() >= deadline:
            return death
        time.sleep(0.05)


class ServerWatch:
    """Checks server processes (and the worker deaths their logs announce) when asked."""

    def __init__(self, servers: list[tuple[str, ServerProcess]]) -> None:
        self.servers = servers
        self._offsets = {id(process): _size(process) for _, process in servers}

    def check(self) -> Death | None:
        """The first server found dead (or with a dead worker), else ``None``."""
        for label, process in self.servers:
            code = process.proc.poll()
            if code is not None:
                return Death(label, describe_exit(code), log=log_tail(process))
            found = self._new_worker_death(process)
            if found is not None:
                pid, worker_code = found
                return Death(label, describe_exit(worker_code), pid, log_tail(process))
        return None

    def _new_worker_death(self, process: ServerProcess) -> tuple[int, int] | None:
        start = self._offsets[id(process)]
        try:
            with open(process.log_path, "rb") as file:
                file.seek(start)
                chunk = file.read(_READ_LIMIT)
        except OSError:
            return None
        # Only whole lines count; the rest is read again next time.
        end = chunk.rfind(b"\n") + 1
        self._offsets[id(process)] = start + end
        return worker_death(chunk[:end].decode("utf-8", "replace"))


def _size(process: ServerProcess) -> int:
    try:
        return os.path.getsize(process.log_path)
    except OSError:
        return 0
