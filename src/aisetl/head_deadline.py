"""The header-read deadline: a request's head must arrive whole within a few seconds.

A client that sends its request head a byte at a time (slowloris), or stops halfway, would
hold a thread of a threaded server for as long as it likes. The clock starts at the request's
first byte (an idle keep-alive connection is governed by the keep-alive timeout instead) and
stops when the head is parsed; a head still incomplete by then gets a 408 in the one error
format and the connection is closed. ``AISETL_HEADER_TIMEOUT`` sets the seconds.

:class:`HeadWatchdog` serves the threaded servers (one thread per process watches every
connection); the event-loop server uses a timer per connection (:mod:`aisetl._uvicorn_deadline`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field

from aisetl.http11 import serialize
from aisetl.reply import TEXT_PLAIN, Reply


def head_timeout_reply(seconds: float) -> Reply:
    """The answer to a request whose head did not arrive in time; the connection then closes."""
    message = (
        f"Request head not complete within {seconds:g} s (AISETL_HEADER_TIMEOUT): nothing was "
        "processed; send the whole request head at once"
    )
    headers = {"Content-Type": TEXT_PLAIN, "Connection": "close"}
    return Reply(408, headers, message.encode())


@dataclass(order=True)
class _Watch:
    deadline: float
    order: int
    sock: socket.socket = field(compare=False)
    state: str = field(default="armed", compare=False)  # armed, done, expired


class HeadWatchdog:
    """Watches request heads being read on blocking sockets; answers 408 to late ones."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._answer = serialize(head_timeout_reply(seconds))
        self._heap: list[_Watch] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self.expired = 0  # heads answered 408 so far

    def arm(self, sock: socket.socket) -> _Watch:
        """Start the clock for the head now being read from ``sock``."""
        watch = _Watch(time.monotonic() + self.seconds, next(self._order), sock)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="aisetl-head-deadline", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, watch)
            if self._heap[0] is watch:
                self._wake.notify()
        return watch

    def disarm(self, watch: _Watch) -> bool:
        """Stop the clock; ``False`` when the deadline had passed (408 sent, socket shut)."""
        with self._lock:
            if watch.state == "armed":
                watch.state = "done"
                return True
            return watch.state == "done"

    @staticmethod
    def late(watch: _Watch | None) -> bool:
        """Whether this head was answered 408 (nothing more may be written)."""
        return watch is not None and watch.state == "expired"

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap or self._heap[0].deadline > time.monotonic():
                    timeout = self._heap[0].deadline - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                watch = heapq.heappop(self._heap)
                if watch.state != "armed":
                    continue
                watch.state = "expired"
                self.expired += 1
            self._expire(watch.sock)

    def _expire(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a client gone or not reading: just close
            sock.send(self._answer, socket.MSG_DONTWAIT)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # the reading thread sees the end of the stream
