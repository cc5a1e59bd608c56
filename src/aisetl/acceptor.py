"""The threaded servers' accepting loop: readiness probes first, connections handed on.

Every time the listening socket is ready the loop takes every connection that is waiting
(up to a batch) without blocking: the socket is shared with the other worker processes, which
wake too and find nothing. A connection whose request already arrived is looked at where it
was accepted: a complete readiness probe is answered right there
(:func:`~aisetl.probe_fastpath.answer_waiting_probe`), anything else goes to a connection
thread. A connection with nothing to read yet stays with the loop until its first bytes come
(a probe sent just after its connect would otherwise queue for a thread behind a burst of
other connections), or, after ``hold_seconds``, goes to a thread, which then applies the
keep-alive timeout as for any idle connection. When the process stops, it stops accepting
(the other workers take what comes next) and waits a moment for the connections it holds.
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
#: Once stopping, how long a connection accepted but silent so far is still waited for (its
#: client connected to this process: a request, a readiness probe say, may be on its way).
STOP_LINGER = 2.0

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
        stop_linger: float = STOP_LINGER,
    ) -> None:
        self._listener = listener
        self._hand_over = hand_over
        self._on_error = on_error
        self._hold_seconds = hold_seconds
        self._answers_probes = answers_probes
        self._stop_linger = stop_linger
        self._paused = False
        self._held: dict[int, tuple[Accepted, float]] = {}  # fd: connection, when to let go
        self._stop = threading.Event()
        self._stopped = threading.Event()  # set while run() is not running
        self._stopped.set()

    def run(self, poll_interval: float = 0.5) -> None:
        """Accept until :meth:`stop`; then give connections still held up to
        ``stop_linger`` seconds to send their first bytes (they are handed on), and close
        those that do not."""
        self._listener.setblocking(False)
        self._stopped.clear()
        linger_until: float | None = None
        listening = False
        try:
            with selectors.DefaultSelector() as selector:
                while True:
                    now = time.monotonic()
                    if linger_until is None and self._stop.is_set():
                        linger_until = now + self._stop_linger
                    if linger_until is not None and (not self._held or now >= linger_until):
                        break
                    wanted = linger_until is None and not self._paused
                    if wanted != listening:  # when stopped, the other workers take them
                        if wanted:
                            selector.register(self._listener, selectors.EVENT_READ)
                        else:
                            selector.unregister(self._listener)
                        listening = wanted
                    wait = self._wait(poll_interval)
                    if linger_until is not None:
                        wait = min(wait, linger_until - now)
                    for key, _ in selector.select(max(wait, 0.0)):
                        if key.fileobj is self._listener:
                            if not self._paused:
                                self._accept(selector)
                        else:
                            self._first_bytes(selector, key.fd)
                    self._let_go(selector, time.monotonic())
                for accepted, _ in self._held.values():  # connected, yet silent all along
                    accepted[0].close()
                self._held.clear()
        finally:
            self._stopped.set()

    def pause(self, paused: bool) -> None:
        """Take no new connection for now (``True``), or take them again; the connections
        held are still looked after. Takes effect within ``poll_interval``."""
        self._paused = paused

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
