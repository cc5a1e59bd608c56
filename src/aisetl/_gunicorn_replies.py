"""A gunicorn reply's status line and headers written with its first body bytes.

gunicorn writes a response's header block with one ``sendall`` and each body piece with
another: two system calls for every small reply, which on the loopback a target talks over
cost about as much as the rest of serving it. While our worker handles a request, the
connection's socket is a :class:`HeadHoldingSocket`: it keeps the first write (the header
block, which gunicorn always writes first) and sends it joined to the next one
(:func:`aisetl.http11.joined`). Anything else done with the socket (``sendfile``, a shutdown,
closing it) sends what is held first, so the bytes on the wire are gunicorn's, in its order.
"""

from __future__ import annotations

import socket
from typing import Any

from aisetl.http11 import joined


class HeadHoldingSocket:
    """A connection's socket for one request whose first ``sendall`` waits for the second."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._first = True

    def sendall(self, data: bytes) -> None:
        """Hold the first write (the header block); send it with the next."""
        if self._first:
            self._first = False
            self._held = bytes(data)
            return
        held, self._held = self._held, None
        if held is None:
            self._sock.sendall(data)
            return
        for part in joined(held, bytes(data)):
            self._sock.sendall(part)

    def flush(self) -> None:
        """Send what is held (a reply with no body bytes after its head)."""
        held, self._held = self._held, None
        if held is not None:
            self._sock.sendall(held)

    def __getattr__(self, name: str) -> Any:
        self.flush()  # whatever else happens on the socket comes after the held head
        return getattr(self._sock, name)
