"""Threads started and kept without the caller ever waiting for one.

Starting a thread waits until the new thread has run (``threading.Thread.start``), and on a
busy process the new thread queues for the interpreter lock behind every other: a few
milliseconds per thread. In a threaded server's accepting thread, a burst of connections
is then accepted a few milliseconds apiece while new probes wait behind it; on an event
loop, nothing else runs meanwhile. :class:`Spawner` starts threads from a thread of its own;
:class:`ThreadCache` keeps threads for the next piece of work (a connection): an idle thread
takes it, and when none is idle the spawner starts one. A thread idle for ``idle_seconds``
ends, so a burst's threads do not outlive it by long.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")

IDLE_SECONDS = 30.0


class Spawner:
    """Starts threads on a thread of its own: :meth:`start` returns at once."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._requests: queue.SimpleQueue[tuple[Callable[[], None], str]] = queue.SimpleQueue()
        self._pid = 0  # of the process whose spawner thread runs (a fork's child has none)
        self._lock = threading.Lock()

    def start(self, target: Callable[[], None], name: str) -> None:
        """Have a daemon thread called ``name`` run ``target`` soon."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._requests = queue.SimpleQueue()
                    threading.Thread(
                        target=self._spawn_forever,
                        args=(self._requests,),
                        name=f"{self._name}-spawner",
                        daemon=True,
                    ).start()
                    self._pid = os.getpid()
        self._requests.put((target, name))

    @staticmethod
    def _spawn_forever(requests: queue.SimpleQueue[tuple[Callable[[], None], str]]) -> None:
        while True:
            target, name = requests.get()
            threading.Thread(target=target, name=name, daemon=True).start()


class ThreadCache(Generic[Item]):
    """Runs ``work(item)`` for each submitted item on a thread of its own, reusing threads."""

    def __init__(
        self, work: Callable[[Item], None], name: str, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        self._work = work
        self._name = name
        self._idle_seconds = idle_seconds
        self._items: queue.SimpleQueue[Item] = queue.SimpleQueue()
        # One token per idle thread that nobody has claimed. deque's append and pop are
        # atomic, so claiming one takes no lock and never waits.
        self._idle: collections.deque[None] = collections.deque()
        self._spawner = Spawner(name)

    def submit(self, item: Item) -> None:
        """Hand ``item`` to an idle thread, or to one about to start; never waits."""
        self._items.put(item)
        try:
            self._idle.pop()  # an idle thread will take it
        except IndexError:
            self._spawner.start(self._serve, self._name)

    @property
    def idle(self) -> int:
        """Threads waiting for work that no submitted item has claimed yet."""
        return len(self._idle)

    def _serve(self) -> None:
        while True:
            try:
                item = self._items.get(timeout=self._idle_seconds)
            except queue.Empty:
                try:
                    self._idle.pop()  # unclaimed: this thread may go
                    return
                except IndexError:
                    continue  # an item claimed this thread's token meanwhile: take it
            self._work(item)
            self._idle.append(None)
