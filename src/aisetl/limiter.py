"""How many synchronous transforms may run at once in one process.

Python threads share one interpreter lock. When many threads run CPU-bound Python at once,
a thread that only needs the lock briefly — the one answering ``/health``, or the event loop
— waits its turn behind all of them, for seconds. So CPU-bound transforms get few slots (the
other worker processes give the parallelism), while transforms that mostly wait (a
subprocess, a remote call) get as many slots as there are threads.

``auto`` learns which kind a transform is from the CPU a call *wanted* (on Linux: the time it
ran plus the time it waited for a CPU, so a machine busy with other work does not make a
CPU-bound call look idle) compared with its wall time: from calls that finished, and, while
objects queue for a slot, from the calls still running, so a transform that waits gets every
thread within milliseconds, not after a first slow round.

Reading another thread's ``schedstat`` is a system call that gives up the interpreter lock,
and getting it back behind busy threads costs more than a quick transform. So while calls
keep wanting no more than :data:`QUICK_CALL` of CPU, a call is timed by its thread's CPU
clock instead (no file read, the lock kept; for so short a call the time it waited for a CPU
says little), and ``schedstat`` is read again once a call wants more.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Slots for transforms that keep a CPU busy (two keep /health quick while one computes).
CPU_BOUND_SLOTS = 2
#: Above this share of CPU time over wall time, a transform counts as CPU-bound.
CPU_BOUND_SHARE = 0.5
_SMOOTHING = 0.2
#: While objects wait for a slot, the running calls are looked at this often (seconds)...
PROBE_INTERVAL = 0.01
#: ...once each of them has run this long (shorter calls say little about their kind);
PROBE_MIN_WALL = 0.02
#: below this share of a CPU wanted, all together, they are waiting for something.
PROBE_WAITING_SHARE = 0.1
#: Calls that want at most this much CPU (seconds; their wall time may be longer, in a
#: busy process, or while they wait for something)...
QUICK_CALL = 0.002
#: ...this many times in a row are timed by their thread's CPU clock (see the module's text).
QUICK_STREAK = 32

Clock = Callable[[], float]


def _schedstat(fd: int) -> float:
    """Seconds a thread ran plus seconds it was runnable but waited for a CPU (Linux), from
    its open ``schedstat`` file."""
    running, waiting = os.pread(fd, 128, 0).split()[:2]
    return (int(running) + int(waiting)) / 1e9


class _SchedstatFile:
    """The calling thread's ``schedstat``, opened once per thread (a read is then one system
    call, not three) and closed when the thread ends."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child's main thread is another thread
        self.fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


_thread_schedstat = threading.local()


def _own_schedstat() -> int:
    file: _SchedstatFile | None = getattr(_thread_schedstat, "file", None)
    if file is None or file.pid != os.getpid():
        file = _thread_schedstat.file = _SchedstatFile()
    return file.fd


def _has_schedstat() -> bool:
    try:
        _schedstat(_own_schedstat())
    except (OSError, ValueError):
        return False
    return True


_SCHEDSTAT = _has_schedstat()


def demand_clock(precise: bool = True) -> Clock:
    """A clock of the CPU the calling thread has wanted, readable from any thread (while the
    calling thread lives); ``precise=False``: only the CPU it used (read without giving up
    the interpreter lock)."""
    if _SCHEDSTAT and precise:
        fd = _own_schedstat()
        return lambda: _schedstat(fd)
    try:
        clock = time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):  # pragma: no cover - neither Linux nor macOS
        return time.thread_time  # only right on the calling thread: see _Call.probe_ok
    return lambda: time.clock_gettime(clock)


class _Call:
    """A transform call holding a slot: when it started and the CPU it has wanted since."""

    __slots__ = ("clock", "demand_start", "probe_ok", "wall_start")

    def __init__(self, precise: bool) -> None:
        self.clock = demand_clock(precise)
        self.probe_ok = self.clock is not time.thread_time
        self.demand_start = self.clock()
        self.wall_start = time.perf_counter()

    def demand(self) -> float:
        return self.clock() - self.demand_start


class TransformLimiter:
    """Slots for running transforms: a fixed number, or learned (``fixed=None``)."""

    def __init__(self, fixed: int | None, ceiling: int) -> None:
        self._fixed = fixed
        self._ceiling = max(ceiling, 1)
        self._cpu_share = 1.0  # assume CPU-bound until calls show otherwise
        self._active = 0
        self._calls: set[_Call] = set()
        self._changed = threading.Condition()
        self._quick = 0  # calls in a row that wanted at most QUICK_CALL of CPU

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
                if self._fixed is None and self._calls:
                    self._changed.wait(PROBE_INTERVAL)
                    self._probe()
                else:
                    self._changed.wait()
            self._active += 1
            precise = self._quick < QUICK_STREAK
        # Outside the lock: a thread that loses the interpreter lock while holding ours makes
        # every other one wait for both. (Adding to a set is atomic; the probe copies it.)
        call = _Call(precise)
        self._calls.add(call)
        try:
            yield
        finally:
            try:
                demand = call.demand()
            except (OSError, ValueError):  # pragma: no cover - /proc unreadable
                demand = 0.0
            wall = time.perf_counter() - call.wall_start
            self._calls.discard(call)
            with self._changed:
                self._quick = self._quick + 1 if demand <= QUICK_CALL else 0
                self._active -= 1
                before = self.limit
                if self._fixed is None and wall > 0:
                    # Threads running Python share one lock, so each of n CPU-bound calls gets
                    # about 1/n of a CPU: scale by how many ran alongside this one.
                    share = min(demand / wall * (self._active + 1), 1.0)
                    self._cpu_share += _SMOOTHING * (share - self._cpu_share)
                if self.limit > before:
                    self._changed.notify_all()
                else:
                    self._changed.notify()

    def _probe(self) -> None:
        """Judge the calls still running (the lock is held): all waiting lifts the limit."""
        calls = tuple(self._calls)
        if self._cpu_share <= CPU_BOUND_SHARE or not calls:
            return
        now = time.perf_counter()
        shortest = min(now - call.wall_start for call in calls)
        if shortest < PROBE_MIN_WALL:  # (decided before any clock is read: quick calls are
            return  # the common case, and each read costs a system call)
        demand = 0.0
        for call in calls:
            if not call.probe_ok:
                return
            try:
                demand += call.demand()
            except (OSError, ValueError):  # the thread ended just now
                return
        # CPU-bound calls hold the interpreter lock in turn: together they want about one CPU
        # for the time the shortest of them ran; calls that wait want next to none.
        if demand / shortest <= PROBE_WAITING_SHARE:
            self._cpu_share = demand / shortest
            self._changed.notify_all()
