"""How many synchronous transforms may run at once in one process.

Python threads share one interpreter lock. When many threads run CPU-bound Python at once,
a thread that only needs the lock briefly — the one answering ``/health``, or the event loop
— waits its turn behind all of them, for seconds. So CPU-bound transforms get few slots (the
other worker processes give the parallelism), while transforms that mostly wait (a
subprocess, a remote call) get as many slots as there are threads. ``auto`` learns which
kind a transform is from the CPU time its calls take compared with their wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Slots for transforms that keep a CPU busy (two keep /health quick while one computes).
CPU_BOUND_SLOTS = 2
#: Above this share of CPU time over wall time, a transform counts as CPU-bound.
CPU_BOUND_SHARE = 0.5
_SMOOTHING = 0.2


class TransformLimiter:
    """Slots for running transforms: a fixed number, or learned (``fixed=None``)."""

    def __init__(self, fixed: int | None, ceiling: int) -> None:
        self._fixed = fixed
        self._ceiling = max(ceiling, 1)
        self._cpu_share = 1.0  # assume CPU-bound until calls show otherwise
        self._active = 0
        self._changed = threading.Condition()

    @property
    def limit(self) -> int:
        """How many transforms may run at once right now."""
        if self._fixed is not None:
            return self._fixed
        return CPU_BOUND_SLOTS if self._cpu_share > CPU_BOUND_SHARE else self._ceiling

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot while a transform runs (waits, without the interpreter lock, for one)."""
        with self._changed:
            while self._active >= self.limit:
                self._changed.wait()
            self._active += 1
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            cpu = time.thread_time() - cpu
            wall = time.perf_counter() - wall
            with self._changed:
                self._active -= 1
                before = self.limit
                if self._fixed is None and wall > 0:
                    # Threads running Python share one lock, so each of n CPU-bound calls gets
                    # about 1/n of a CPU: scale by how many ran alongside this one.
                    share = min(cpu / wall * (self._active + 1), 1.0)
                    self._cpu_share += _SMOOTHING * (share - self._cpu_share)
                if self.limit > before:
                    self._changed.notify_all()
                else:
                    self._changed.notify()
