"""Per-object deadlines (``AISETL_OBJ_TIMEOUT``) and work that stops when they pass.

A :class:`Bounds` is what may end an object's work early: its :class:`Deadline`, and a probe
that says whether the target hung up. Work runs under it three ways:

* :meth:`Bounds.call` (a thread): the function runs on an executor thread while the caller
  waits, looking at the deadline and the probe every :data:`POLL` seconds;
* :meth:`Bounds.wait` (an event loop): the same around an awaitable;
* :meth:`Bounds.bound` (a coroutine): an ``async`` transform, cancelled when its object is
  given up.

Python cannot stop a thread: a synchronous transform still running when its object is given up
is *abandoned*, and the caller is told so (``on_abandon``) to report it and drop its result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import select
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aisetl.sources import ClientGone, Failure

T = TypeVar("T")
#: Seconds between two looks at the deadline and at the client while work runs.
POLL = 0.1

Probe = Callable[[], bool]


class DeadlineExceeded(Failure):
    """504: the object's deadline passed (``doing`` says while doing what)."""

    def __init__(self, seconds: float, doing: str) -> None:
        super().__init__(
            504,
            f"Deadline of {seconds:g} s (AISETL_OBJ_TIMEOUT) passed while {doing}: the server "
            "gave up on the object; raise AISETL_OBJ_TIMEOUT (and the spec's obj_timeout) if "
            "it needs more time",
        )


class Deadline:
    """A point in time (``time.monotonic``) by which an object must be answered."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float, started: float) -> None:
        self.seconds = seconds
        self.at = started + seconds

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.at

    def check(self, doing: str) -> None:
        """Raise :class:`DeadlineExceeded` when the deadline has passed."""
        if time.monotonic() >= self.at:
            raise DeadlineExceeded(self.seconds, doing)


class Bounds:
    """What may end one object's work early: a deadline, a client that hung up, or neither."""

    __slots__ = ("deadline", "gone")

    def __init__(self, deadline: Deadline | None, gone: Probe | None) -> None:
        self.deadline = deadline
        self.gone = gone

    @property
    def active(self) -> bool:
        """Whether anything bounds the work (else it simply runs)."""
        return self.deadline is not None

    def check(self, doing: str) -> None:
        """Raise when the deadline passed (504) or the client hung up (:class:`ClientGone`)."""
        if self.deadline is not None:
            self.deadline.check(doing)
        if self.gone is not None and self.gone():
            raise ClientGone(f"the target hung up while the server was {doing}")

    def _wait_time(self) -> float:
        wait = POLL if self.gone is not None else 3600.0
        if self.deadline is not None:
            wait = min(wait, self.deadline.remaining())
        return max(wait, 0.0)

    def call(
        self,
        executor: concurrent.futures.Executor,
        on_abandon: Callable[[concurrent.futures.Future[T], str], None],
        doing: str,
        func: Callable[..., T],
        *args: Any,
    ) -> T:
        """``func(*args)`` on ``executor``; raise when the object is given up before it ends."""
        future = executor.submit(func, *args)
        while True:
            try:
                return future.result(timeout=self._wait_time())
            except concurrent.futures.TimeoutError:
                pass
            try:
                self.check(doing)
            except (Failure, ClientGone) as exc:
                if not future.cancel():
                    on_abandon(future, str(exc))
                raise

    async def wait(
        self,
        awaitable: Awaitable[T],
        on_abandon: Callable[[asyncio.Future[T], str], None] | None,
        doing: str,
    ) -> T:
        """Await ``awaitable`` on an event loop; cancel it (and raise) when the object is given up.

        ``on_abandon`` is told when what is cancelled is only a thread's future (the thread
        goes on): the caller reports the overrun.
        """
        future = asyncio.ensure_future(awaitable)
        while True:
            done, _ = await asyncio.wait((future,), timeout=self._wait_time())
            if done:
                return future.result()
            try:
                self.check(doing)
            except (Failure, ClientGone) as exc:
                future.cancel()
                if on_abandon is not None:
                    on_abandon(future, str(exc))
                raise

    async def bound(self, awaitable: Awaitable[T]) -> T:
        """An ``async`` transform that is cancelled when its object is given up."""
        return await self.wait(awaitable, None, "running the async transform")


def peer_closed(sock: socket.socket | None) -> bool:
    """Whether the peer of a connection whose request was read has hung up (never blocks)."""
    if sock is None:
        return False
    try:
        poller = select.poll()  # not select(): descriptors above 1024 are common here
        poller.register(sock.fileno(), select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
