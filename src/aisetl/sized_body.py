"""A request body of known size, written in place into one buffer and handed over as bytes.

Collecting a large body as the pieces the network gives (thousands of 64 KiB blocks) and
joining them at the end costs a copy, and it spreads every body over small heap blocks
that stay with the process once freed, each thread in its own malloc arena: a server busy
with large bodies then holds far more memory than the bodies it has in flight, which
``AISETL_MAX_INFLIGHT_BYTES`` cannot bound. :class:`SizedBody` keeps one buffer that grows
toward the body's size as its bytes arrive; :meth:`SizedBody.value` hands it over without a
copy. It is not filled to its whole size up front: zeroing (and faulting in) 4 MiB takes
milliseconds, and an event loop that starts 200 such bodies in one turn would answer nothing
else, readiness probes included, for as long.
"""

from __future__ import annotations

import io
import socket

from aisetl.sources import BodyDoesNotFit

FIRST_ROOM = 256 * 1024  # then twice as much each time it is full, up to the body's size


class SizedBody:
    """The bytes of a body of ``length`` bytes, as they arrive."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.size = 0  # bytes received so far
        self._room = 0  # bytes the buffer holds (received, then zeros up to its length)
        self._buffer = io.BytesIO()

    def add(self, piece: bytes | bytearray | memoryview) -> None:
        """Append ``piece`` (a body longer than announced grows the buffer)."""
        self._make_room(self.size + len(piece))
        self._buffer.write(piece)
        self.size += len(piece)

    def receive(self, sock: socket.socket, most: int) -> int:
        """Read up to ``most`` of the missing bytes from ``sock`` straight into place; the
        count read (0: the peer closed)."""
        want = min(most, self.length - self.size)
        self._make_room(self.size + want)
        with self._buffer.getbuffer() as view, view[self.size : self.size + want] as part:
            count = sock.recv_into(part)
        self.size += count
        self._buffer.seek(self.size)
        return count

    def value(self) -> bytes:
        """The body received (shorter than ``length`` when fewer bytes came)."""
        if self._room != self.size:
            self._buffer.truncate(self.size)
        return self._buffer.getvalue()

    def _make_room(self, end: int) -> None:
        """Let the buffer hold ``end`` bytes, doubling it (up to the announced size, unless
        more came): a few reallocations per body instead of BytesIO's one per eighth more,
        each of which may be a copy."""
        if end <= self._room:
            return
        doubled = max(2 * self._room, FIRST_ROOM)
        room = max(end, min(self.length, doubled) if end <= self.length else doubled)
        try:
            self._buffer.seek(room - 1)
            self._buffer.write(b"\0")
        except (MemoryError, OverflowError):
            raise BodyDoesNotFit(self.length) from None
        self._buffer.seek(self.size)
        self._room = room
