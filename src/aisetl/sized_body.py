"""A request body of known size, written in place into one buffer and handed over as bytes.

Collecting a large body as the pieces the network gives (thousands of 64 KiB blocks) and
joining them at the end costs a copy, and it spreads every body over small heap blocks
that stay with the process once freed, each thread in its own malloc arena: a server busy
with large bodies then holds far more memory than the bodies it has in flight, which
``AISETL_MAX_INFLIGHT_BYTES`` cannot bound. :class:`SizedBody` holds one buffer of the
body's size from the start; :meth:`SizedBody.value` hands it over without a copy.
"""

from __future__ import annotations

import io
import socket

from aisetl.sources import BodyDoesNotFit


class SizedBody:
    """The bytes of a body of ``length`` bytes, as they arrive."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.size = 0  # bytes received so far
        self._buffer = io.BytesIO()
        if length:  # sized once: no regrowth, and getvalue() shares the buffer
            try:
                self._buffer.seek(length - 1)
                self._buffer.write(b"\0")
            except (MemoryError, OverflowError):
                raise BodyDoesNotFit(length) from None
            self._buffer.seek(0)

    def add(self, piece: bytes | bytearray | memoryview) -> None:
        """Append ``piece`` (a body longer than announced grows the buffer)."""
        self._buffer.write(piece)
        self.size += len(piece)

    def receive(self, sock: socket.socket, most: int) -> int:
        """Read up to ``most`` of the missing bytes from ``sock`` straight into place; the
        count read (0: the peer closed)."""
        want = min(most, self.length - self.size)
        with self._buffer.getbuffer() as view, view[self.size : self.size + want] as part:
            count = sock.recv_into(part)
        self.size += count
        self._buffer.seek(self.size)
        return count

    def value(self) -> bytes:
        """The body received (shorter than ``length`` when fewer bytes came)."""
        if self._buffer.seek(0, io.SEEK_END) != self.size:
            self._buffer.truncate(self.size)
        return self._buffer.getvalue()
