"""A FIFO queue for coroutines of one event loop, at a fraction of :class:`asyncio.Queue`'s cost.

Each ws task passes through two queues (uvicorn's, from the protocol to the application, and the
session's, from the reader to the writer of answers). :class:`asyncio.Queue` spends most of its
time on what neither needs (task accounting for ``join``, its own methods calling each other);
:class:`LightQueue` has the part they use: ``put``, ``put_nowait``, ``get``, ``empty``,
``qsize``, ``full``, ``awaited``, and the same behaviour when a waiting coroutine is cancelled
(a wake-up it did not use goes to the next one waiting).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LightQueue(Generic[T]):
    """First in, first out; ``maxsize`` of 0 or less is unbounded (as in asyncio)."""

    __slots__ = ("_getters", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    def awaited(self) -> bool:
        """Whether a coroutine waits in :meth:`get` (so the queue is empty)."""
        return bool(self._getters) and not self._items

    def put_nowait(self, item: T) -> None:
        """Add ``item``; :class:`asyncio.QueueFull` when the queue is full."""
        if 0 < self._maxsize <= len(self._items):
            raise asyncio.QueueFull
        self._items.append(item)
        if self._getters:
            _wake(self._getters)

    async def put(self, item: T) -> None:
        """Add ``item``, once there is room."""
        while 0 < self._maxsize <= len(self._items):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                _cancelled(waiter, self._putters, not self.full())
                raise
        self._items.append(item)
        if self._getters:
            _wake(self._getters)

    async def get(self) -> T:
        """The oldest item, once there is one."""
        items = self._items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                _cancelled(waiter, self._getters, bool(items))
                raise
        item = items.popleft()
        if self._putters:
            _wake(self._putters)
        return item


def _cancelled(
    waiter: asyncio.Future[None], waiters: deque[asyncio.Future[None]], ready: bool
) -> None:
    """A waiting coroutine was cancelled: a wake-up it got but did not use goes to the next one
    (when what it waited for is still there)."""
    if not waiter.cancelled():
        if ready:
            _wake(waiters)
    elif waiter in waiters:
        waiters.remove(waiter)


def _wake(waiters: deque[asyncio.Future[None]]) -> None:
    """Wake the first waiter still waiting."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
