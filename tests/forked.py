"""Run a check in a forked child process and learn its answer in the parent."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_forked_child(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` returned true in a child forked now (false if it raised)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, then leave without cleanup
        ok = False
        try:
            ok = check()
        finally:
            os.write(writer, b"1" if ok else b"0")
            os._exit(0)
    os.close(writer)
    answer = os.read(reader, 1)
    os.waitpid(pid, 0)
    os.close(reader)
    return answer == b"1"
