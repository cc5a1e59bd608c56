"""Hand work from an event loop to threads and back, cheaply.

``loop.run_in_executor`` costs a ``concurrent.futures.Future`` (with its own lock and
condition) per call and wakes the loop once per result. Here the loop's own future is
completed directly, and results that finish close together wake the loop once: under load
one wake-up carries many results.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aisetl.thread_cache import Spawner

T = TypeVar("T")

_STOP = object()


class Handoff:
    """A pool of threads that run functions for one event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, threads: int, name: str = "aisetl-transform"
    ) -> None:
        self._loop = loop
        self._max_threads = max(threads, 1)
        self._name = name
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: collections.deque[tuple[asyncio.Future[Any], bool, Any]] = collections.deque()
        self._wake_pending = False
        self._wake_lock = threading.Lock()
        self._spawner = Spawner(name)
        self._threads = 0  # started, or asked of the spawner
        self._idle = 0  # threads waiting for work
        self._queued = 0  # work handed over that no thread has taken yet
        self._count_lock = threading.Lock()
        #: Work handed over and not finished yet.
        self.busy = 0

    def run(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``func(*args)`` on a thread; await the returned future on the loop."""
        future: asyncio.Future[T] = self._loop.create_future()
        self.busy += 1
        with self._count_lock:
            # An idle thread serves only one piece of work: several handed over before it woke
            # up need threads of their own (else they would queue behind each other).
            self._queued += 1
            short = self._queued > self._idle
        if short and self._threads < self._max_threads:
            # Not started here: starting waits until the thread runs, and the loop would stop.
            self._spawner.start(self._worker, f"{self._name}-{self._threads}")
            self._threads += 1
        self._work.put((future, func, args))
        return future

    def _worker(self) -> None:
        work = self._work
        while True:
            with self._count_lock:
                self._idle += 1
            item = work.get()
            with self._count_lock:
                self._idle -= 1
                if item is not _STOP:
                    self._queued -= 1
            if item is _STOP:
                return
            future, func, args = item
            try:
                result = (True, func(*args))
            except BaseException as exc:
                result = (False, exc)
            self._done.append((future, *result))
            with self._wake_lock:
                if self._wake_pending:
                    continue
                self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody waits for the result
                return

    def _deliver(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        done = self._done
        while done:
            future, ok, value = done.popleft()
            self.busy -= 1
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def shutdown(self) -> None:
        """Let the threads finish what they hold and stop (does not wait)."""
        for _ in range(self._threads):
            self._work.put(_STOP)
