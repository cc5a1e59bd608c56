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
import socket
import threading
import time
from collections import deque

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


class _Watch:
    """One request head being read: its deadline, its socket, how it ended."""

    __slots__ = ("deadline", "sock", "state")

    def __init__(self, deadline: float, sock: socket.socket) -> None:
        self.deadline = deadline
        self.sock = sock
        self.state = "armed"  # then done, or expired


class HeadWatchdog:
    """Watches request heads being read on blocking sockets; answers 408 to late ones.

    Every head has the same allowance, so deadlines come in the order heads were armed: the
    watches wait in a FIFO (no ordering to keep), and the watching thread sleeps until the
    oldest one still armed is due, or for one allowance while heads come and go (one armed
    meanwhile cannot be due sooner). Heads read in time are dropped when it wakes: it wakes
    about once per allowance, and once per late head, however many requests come; with no
    requests at all it sleeps until the next one.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._answer = serialize(head_timeout_reply(seconds))
        self._queue: deque[_Watch] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.expired = 0  # heads answered 408 so far
        self.wakeups = 0  # times the watching thread woke up
        self._armed_since_wait = False
        self._untimed = False  # the thread waits without a timeout (for the next head)

    def arm(self, sock: socket.socket) -> _Watch:
        """Start the clock for the head now being read from ``sock``."""
        watch = _Watch(time.monotonic() + self.seconds, sock)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="aisetl-head-deadline", daemon=True
                )
                self._thread.start()
            self._queue.append(watch)
            self._armed_since_wait = True
            if self._untimed:  # the thread sleeps until a head is armed
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
        queue = self._queue
        while True:
            with self._lock:
                while True:
                    while queue and queue[0].state != "armed":
                        queue.popleft()  # read in time
                    now = time.monotonic()
                    if queue and queue[0].deadline <= now:
                        break
                    if queue:  # until the oldest head still being read is due
                        delay: float | None = queue[0].deadline - now
                    elif self._armed_since_wait:  # heads come and go: look again within an
                        delay = self.seconds  # allowance (one armed now is due no sooner)
                    else:  # none came in a whole allowance: sleep until the next one
                        delay = None
                    self._armed_since_wait = False
                    self._untimed = delay is None
                    self._wake.wait(delay)
                    self._untimed = False
                    self.wakeups += 1
                watch = queue.popleft()
                watch.state = "expired"
                self.expired += 1
            self._expire(watch.sock)

    def _expire(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a client gone or not reading: just close
            sock.send(self._answer, socket.MSG_DONTWAIT)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # the reading thread sees the end of the stream
