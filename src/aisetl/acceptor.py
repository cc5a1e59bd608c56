"""The threaded server's accepting loop: readiness probes first, connections handed on.

Every time the listening socket is ready the loop takes every connection that is waiting
(up to a batch) without blocking: the socket is shared with the other worker processes, which
wake too and find nothing. A connection whose request already arrived is looked at where it
was accepted: a complete readiness probe is answered right there
(:func:`~aisetl.probe_fastpath.answer_waiting_probe`), anything else goes to a connection
thread. A connection with nothing to read yet stays with the loop until its first bytes come
(a probe sent just after its connect would otherwise queue for a thread behind a burst of
other connections), or, after ``hold_seconds``, goes to a thread, which then applies the
keep-alive timeout as for any idle connection.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from aisetl.probe_fastpath import Waiting, answer_waiting_probe

ACCEPT_BATCH = 256  # connections taken per wake-up at most, so that a stop is seen soon
HOLD_SECONDS = 1.0

Accepted = tuple[socket.socket, Any]


class Acceptor:
    """Accepts on ``listener`` until :meth:`stop`; ``hand_over`` gets the other connections.

    ``answers_probes``, when given, is asked before each connection: while it says no, every
    connection is handed over as it is, probes included (an event loop that has stopped
    turning must not be reported ready by a thread beside it).
    """

    def __init__(
        self,
        listener: socket.socket,
        hand_over: Callable[[Accepted], None],
        on_error: Callable[[OSError], None],
        hold_seconds: float = HOLD_SECONDS,
        answers_probes: Callable[[], bool] | None = None,
    ) -> None:
        self._listener = listener
        self._hand_over = hand_over
        self._on_error = on_error
        self._hold_seconds = hold_seconds
        self._answers_probes = answers_probes
        self._held: dict[int, tuple[Accepted, float]] = {}  # fd: connection, when to let go
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def run(self, poll_interval: float = 0.5) -> None:
        """Accept until :meth:`stop`; connections still held are handed on at the end."""
        self._listener.setblocking(False)
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._listener, selectors.EVENT_READ)
                while not self._stop.is_set():
                    for key, _ in selector.select(self._wait(poll_interval)):
                        if key.fileobj is self._listener:
                            self._accept(selector)
                        else:
                            self._first_bytes(selector, key.fd)
                    self._let_go(selector, time.monotonic())
                self._let_go(selector, float("inf"))
        finally:
            self._stopped.set()

    def stop(self) -> None:
        """Make :meth:`run` return, and wait until it has (call it from another thread)."""
        self._stop.set()
        self._stopped.wait()

    def _wait(self, poll_interval: float) -> float:
        if not self._held:
            return poll_interval
        _, until = next(iter(self._held.values()))  # held in the order they came
        return max(0.0, min(poll_interval, until - time.monotonic()))

    def _accept(self, selector: selectors.BaseSelector) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                accepted = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left, or another worker took it
            except OSError as exc:  # out of file descriptors, say: the next wake retries
                self._on_error(exc)
                return
            conn = accepted[0]
            if not self._look(accepted):
                self._held[conn.fileno()] = (accepted, time.monotonic() + self._hold_seconds)
                selector.register(conn, selectors.EVENT_READ)

    def _first_bytes(self, selector: selectors.BaseSelector, fd: int) -> None:
        accepted, _ = self._held.pop(fd)
        selector.unregister(accepted[0])
        if not self._look(accepted):  # readable, yet nothing to peek: let a thread find out
            self._hand_over(accepted)

    def _look(self, accepted: Accepted) -> bool:
        """Answer a waiting probe, or hand over what else arrived; ``False`` if nothing did."""
        if self._answers_probes is not None and not self._answers_probes():
            self._hand_over(accepted)
            return True
        found = answer_waiting_probe(accepted[0])
        if found is Waiting.ANSWERED:
            accepted[0].close()
        elif found is Waiting.OTHER:
            self._hand_over(accepted)
        return found is not Waiting.NOTHING

    def _let_go(self, selector: selectors.BaseSelector, now: float) -> None:
        while self._held:
            fd, (accepted, until) = next(iter(self._held.items()))
            if until > now:
                return
            del self._held[fd]
            selector.unregister(accepted[0])
            self._hand_over(accepted)
