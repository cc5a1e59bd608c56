"""gunicorn's threaded worker reading request heads on its main loop, off the pool threads.

gunicorn hands a connection to a pool thread as soon as it is accepted or becomes readable,
and the thread then reads the request head, however slowly it comes. A client that sends its
head a byte at a time (slowloris) holds a thread until the header-read deadline; with more
such clients than threads, everything else waits, readiness probes included.

:class:`HeadReadingWorker` collects each head on the worker's main loop instead
(non-blocking reads, as the socket becomes readable), so a thread is taken only by a request
whose head is complete: the bytes read are handed to gunicorn's parser as if they had just
arrived. There too a complete readiness probe is answered at once, and a head still
incomplete at the deadline (``AISETL_HEADER_TIMEOUT``) is answered 408 and closed. A head
larger than :data:`HEAD_LIMIT` goes to a thread as it is (gunicorn's limits then apply).

Connections are accepted on :class:`~aisetl.acceptor.Acceptor` threads, not on the main
loop, which then adopts them: a readiness probe is answered where it is accepted. On the main
loop it waited for every connection of a burst ahead of it, and each of the loop's system
calls queues for the interpreter lock behind the pool threads copying bodies (under 1,000
new connections and 200 large bodies, probes took 0.1 to 0.9 s there).

It relies on parts of gunicorn that are not public (:data:`METHODS`, :data:`ATTRIBUTES`),
checked at import by :mod:`aisetl._gunicorn`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from aisetl.acceptor import STOP_LINGER, Acceptor
from aisetl.head_deadline import head_timeout_reply
from aisetl.http11 import serialize
from aisetl.probe_fastpath import probe_answer

#: The gunicorn worker methods used or overridden here, and the state read.
METHODS = ("set_accept_enabled", "on_client_socket_readable", "murder_keepalived", "enqueue_req")
ATTRIBUTES = (
    "poller", "nr_conns", "keepalived_conns", "alive", "cfg", "sockets", "method_queue",
    "_accepting",
)  # fmt: skip
#: A head this large without its end goes to a pool thread as it is.
HEAD_LIMIT = 64 * 1024
#: Seconds between two looks for heads past their deadline.
SCAN_INTERVAL = 0.1
_END = b"\r\n\r\n"
_READ = 64 * 1024


class _Head:
    """The part of a request head read so far on one connection."""

    __slots__ = ("data", "deadline", "idle_until")

    def __init__(self, idle_until: float) -> None:
        self.data = bytearray()
        self.deadline = 0.0  # set at the first byte
        self.idle_until = idle_until  # before the first byte: the keep-alive timeout


class HeadReadingWorker(ThreadWorker):  # type: ignore[misc]
    """A threaded worker whose pool threads get connections with a complete request head."""

    _accepting: bool  # gunicorn's: whether set_accept_enabled last enabled accepting
    #: Seconds a head may take from its first byte (0: no deadline); set by the server.
    head_seconds: float = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heads: dict[Any, _Head] = {}  # connections whose head is being read
        self._acceptors: list[Acceptor] = []
        self._next_scan = 0.0
        self._stopping = False

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept on :class:`~aisetl.acceptor.Acceptor` threads rather than on this loop.

        gunicorn calls this to start accepting, to pause while the worker holds its most
        connections, and to stop. Stopping waits (at most ``STOP_LINGER``) for connections
        accepted but silent so far, then adopts every connection handed over, so that
        gunicorn's graceful stop waits for them as for its own.
        """
        if enabled == self._accepting:
            return
        self._accepting = enabled
        if enabled and not self._acceptors:
            for listener in self.sockets:
                acceptor = Acceptor(
                    listener,
                    partial(self._hand_over, listener.getsockname()),
                    lambda exc: self.log.warning("accepting a connection failed: %s", exc),
                )
                name = f"aisetl-accept-{len(self._acceptors)}"
                threading.Thread(target=acceptor.run, name=name, daemon=True).start()
                self._acceptors.append(acceptor)
        elif self.alive:  # over (or back under) gunicorn's connection limit
            for acceptor in self._acceptors:
                acceptor.pause(not enabled)
        elif not enabled:  # the worker stops
            for acceptor in self._acceptors:
                acceptor.stop()
            self.method_queue.run_callbacks(None, max_callbacks=1 << 20)

    def _hand_over(self, name: Any, accepted: tuple[socket.socket, Any]) -> None:
        """On an acceptor's thread: the connection joins this loop (never waits)."""
        self.method_queue.defer(self._adopt, name, accepted)

    def _adopt(self, name: Any, accepted: tuple[socket.socket, Any]) -> None:
        sock, addr = accepted
        self.nr_conns += 1
        self._await_head(gthread.TConn(self.cfg, sock, addr, name))  # non-blocking

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection's next request begins: read its head here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)

    def _await_head(self, conn: Any) -> None:
        self._heads[conn] = _Head(time.monotonic() + self.cfg.keepalive)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn: Any, sock: socket.socket) -> None:
        head = self._heads.get(conn)
        if head is None:
            return
        try:
            data = sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or reset) before a whole head came
            self._forget(conn)
            self._close(conn)
            return
        if not head.data:
            head.deadline = time.monotonic() + self.head_seconds
        head.data += data
        if _END not in head.data and len(head.data) < HEAD_LIMIT:
            return
        self._forget(conn)
        received = bytes(head.data)
        answer = probe_answer(received) if conn.parser is None else None
        if answer is not None:  # a readiness probe on its own connection: answered here
            with contextlib.suppress(OSError):
                sock.send(answer)
            self._close(conn)
            return
        conn.init()  # blocking from here on, and gunicorn's parser reads what we read first
        conn.parser.unreader.unread(received)
        conn.aisetl_head_read = _END in received
        self.enqueue_req(conn)

    def murder_keepalived(self, force: bool = False) -> None:
        """gunicorn's keep-alive expiry, then heads past their deadline (408) or idle too
        long (closed); every waiting connection when forced."""
        super().murder_keepalived(force)
        now = time.monotonic()
        if now < self._next_scan and not force:  # the loop turns often; deadlines are coarse
            return
        self._next_scan = now + SCAN_INTERVAL
        if not self.alive and not self._stopping:  # stopping: the idle get a moment to speak
            self._stopping = True
            for head in self._heads.values():
                head.idle_until = min(head.idle_until, now + STOP_LINGER)
        for conn, head in list(self._heads.items()):
            if head.data and self.head_seconds and now >= head.deadline:
                with contextlib.suppress(OSError):
                    conn.sock.send(serialize(head_timeout_reply(self.head_seconds)))
                self.log.info("request head from %s not complete in time: 408", conn.client)
            elif not (force or now >= head.idle_until):
                continue
            self._forget(conn)
            self._close(conn)

    def _forget(self, conn: Any) -> None:
        self._heads.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()
