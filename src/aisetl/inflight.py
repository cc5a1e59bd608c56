"""A bound on the bytes of buffered objects in flight in one worker (``AISETL_MAX_INFLIGHT_BYTES``).

An out-of-memory kill ends the ETL on its target for every object, so a worker reserves the
memory a buffered object will hold before reading its body: the body and a result of about
its size, twice the declared length. Past the bound a new body waits, unread (the server stops
reading it and TCP pushes back on the target), until objects in flight are answered. Waiters
are served in arrival order; one object larger than the bound is let in alone rather than never.

Threads (:meth:`InflightBytes.acquire`) and event loops (:meth:`InflightBytes.acquire_async`)
wait on the same bound.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable

from aisetl.memory import memory_limit
from aisetl.metrics import Observer

#: Share of the memory limit the buffered objects of a pod may hold (the rest is the runtime's,
#: the models', the transforms' own).
DEFAULT_SHARE = 0.5
#: A buffered object holds its body and its result: reserved up front as this many body sizes.
RESERVE_FACTOR = 2


def default_bound(workers: int) -> int:
    """Bytes per worker: half the machine's or container's memory, shared by the workers."""
    limit = memory_limit()
    if not limit:
        return 0
    return int(limit * DEFAULT_SHARE) // max(workers, 1)


class _Waiter:
    __slots__ = ("granted", "size", "wake")

    def __init__(self, size: int, wake: Callable[[], None]) -> None:
        self.size = size
        self.wake = wake
        self.granted = False


class InflightBytes:
    """Reservations of buffered bytes against ``limit`` (0: unbounded, only counted)."""

    def __init__(self, limit: int, observer: Observer) -> None:
        self.limit = max(limit, 0)
        self.reserved = 0
        self._observer = observer
        self._lock = threading.Lock()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        observer.memory_limit(self.limit)
        observer.memory(self._reserved_now)

    def _reserved_now(self) -> int:
        return self.reserved

    def _fits(self, size: int) -> bool:
        return self.limit == 0 or self.reserved == 0 or self.reserved + size <= self.limit

    def _take(self, size: int) -> bool:
        """Reserve at once if nobody waits and it fits (called with the lock held)."""
        if self._waiters or not self._fits(size):
            return False
        self.reserved += size
        return True

    def _grant(self) -> None:
        """Let waiters in, in order, while they fit (called with the lock held)."""
        while self._waiters and self._fits(self._waiters[0].size):
            waiter = self._waiters.popleft()
            self.reserved += waiter.size
            waiter.granted = True
            waiter.wake()

    def try_acquire(self, size: int) -> bool:
        """Reserve ``size`` bytes if that needs no wait (``False``: nothing reserved)."""
        with self._lock:
            return self._take(size)

    def acquire(self, size: int, timeout: float | None) -> bool:
        """Reserve ``size`` bytes, waiting at most ``timeout`` seconds (None: as long as needed)."""
        with self._lock:
            if self._take(size):
                return True
            event = threading.Event()
            waiter = _Waiter(size, event.set)
            self._waiters.append(waiter)
        started = time.monotonic()
        self._observer.memory_waiting(1)
        try:
            event.wait(timeout)
        except BaseException:
            self._give_up(waiter, started, keep=False)
            raise
        return self._give_up(waiter, started, keep=True)

    def _give_up(self, waiter: _Waiter, started: float, keep: bool) -> bool:
        """The wait is over: leave the queue, or keep (``keep``) or return what was granted."""
        with self._lock:
            if not waiter.granted:
                self._waiters.remove(waiter)
            elif not keep:
                self.reserved -= waiter.size
            self._grant()
        self._observer.memory_waiting(-1, time.monotonic() - started)
        return waiter.granted and keep

    async def acquire_async(self, size: int, timeout: float | None) -> bool:
        """:meth:`acquire` on an event loop (the loop goes on serving while this waits)."""
        with self._lock:
            if self._take(size):
                return True
            loop = asyncio.get_running_loop()  # (only a wait needs a future and a wake-up)
            future: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                loop.call_soon_threadsafe(_resolve, future)

            waiter = _Waiter(size, wake)
            self._waiters.append(waiter)
        started = time.monotonic()
        self._observer.memory_waiting(1)
        try:
            await asyncio.wait((future,), timeout=timeout)
        except BaseException:  # cancelled: what was granted goes back
            self._give_up(waiter, started, keep=False)
            raise
        return self._give_up(waiter, started, keep=True)

    def add(self, size: int) -> None:
        """Count bytes that are already in memory (a result): never waits, may pass the bound."""
        with self._lock:
            self.reserved += size

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes and let waiters in."""
        if size <= 0:
            return
        with self._lock:
            self.reserved -= size
            self._grant()

    @property
    def waiting(self) -> int:
        """Bodies waiting now."""
        return len(self._waiters)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
