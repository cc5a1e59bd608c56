"""A request body of known size, written in place into one buffer and handed over as bytes.

Collecting a large body as the pieces the network gives (thousands of 64 KiB blocks) and
joining them at the end costs a copy, and it spreads every body over small heap blocks
that stay with the process once freed, each thread in its own malloc arena: a server busy
with large bodies then holds far more memory than the bodies it has in flight, which
``AISETL_MAX_INFLIGHT_BYTES`` cannot bound.

:class:`SizedBody` writes each piece straight into place in the ``bytes`` object it hands over:
one made at the body's size and not filled first (what CPython's own buffered reads do, through
the same C call, ``PyBytes_FromStringAndSize(NULL, n)``). Nothing is zeroed up front, and
nothing is copied again: a body whose buffer grew by doubling had its old contents moved at
each step and its new room zeroed, about two more passes over a 16 MiB body. Zeroing up front
was no better: 4 MiB takes milliseconds, and an event loop beginning 200 such bodies in one turn
would answer nothing else, readiness probes included, for as long. The memory is only touched
as the bytes arrive.

Where that C call is not at hand (not CPython), or for a body that turns out longer than
announced, the bytes go into a buffer that doubles as they arrive.
"""

from __future__ import annotations

import ctypes
import io
import socket
from collections.abc import Callable

from aisetl.sources import BodyDoesNotFit

FIRST_ROOM = 256 * 1024  # the growing buffer's first size, then twice as much each time
#: From this size on a body is written into place (smaller ones: one small buffer is as cheap).
IN_PLACE_FROM = 64 * 1024


def _bytes_maker() -> Callable[[int], tuple[bytes, memoryview]] | None:
    """A maker of a ``bytes`` object of a given size with a writable view of its storage, or
    None where this interpreter does not allow it (checked once, on a small object)."""
    try:
        new = ctypes.pythonapi.PyBytes_FromStringAndSize
    except AttributeError:  # not CPython
        return None
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)

    def make(length: int) -> tuple[bytes, memoryview]:
        data: bytes = new(None, length)
        address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        storage = (ctypes.c_char * length).from_address(address or 0)
        return data, memoryview(storage).cast("B")

    try:
        probe, view = make(IN_PLACE_FROM)
        view[:4] = b"\x01\x02\x03\x04"
        view[-1:] = b"\xff"
        works = probe[:4] == b"\x01\x02\x03\x04" and probe[-1] == 0xFF
        view.release()
    except (ValueError, TypeError, OSError):
        return None
    return make if works else None


_MAKE_BYTES = _bytes_maker()


class SizedBody:
    """The bytes of a body of ``length`` bytes, as they arrive."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.size = 0  # bytes received so far
        self._data: bytes | None = None  # the value, written into place through _view
        self._view: memoryview | None = None
        self._room = 0  # bytes the growing buffer holds (received, then zeros up to its length)
        self._buffer: io.BytesIO | None = None
        if length >= IN_PLACE_FROM and _MAKE_BYTES is not None:
            try:
                self._data, self._view = _MAKE_BYTES(length)
            except (MemoryError, OverflowError):
                raise BodyDoesNotFit(length) from None
        else:
            self._buffer = io.BytesIO()

    def add(self, piece: bytes | bytearray | memoryview) -> None:
        """Append ``piece`` (a body longer than announced grows the buffer)."""
        end = self.size + len(piece)
        view = self._view
        if view is not None and end <= self.length:
            view[self.size : end] = piece
            self.size = end
            return
        buffer = self._growing()
        self._make_room(buffer, end)
        buffer.write(piece)
        self.size = end

    def receive(self, sock: socket.socket, most: int) -> int:
        """Read up to ``most`` of the missing bytes from ``sock`` straight into place; the
        count read (0: the peer closed)."""
        want = min(most, self.length - self.size)
        view = self._view
        if view is not None:
            with view[self.size : self.size + want] as part:
                count = sock.recv_into(part)
            self.size += count
            return count
        buffer = self._growing()
        self._make_room(buffer, self.size + want)
        with buffer.getbuffer() as whole, whole[self.size : self.size + want] as part:
            count = sock.recv_into(part)
        self.size += count
        buffer.seek(self.size)
        return count

    def value(self) -> bytes:
        """The body received (shorter than ``length`` when fewer bytes came)."""
        view, data = self._view, self._data
        if view is not None and data is not None:
            self._view = self._data = None
            try:
                return data if self.size == len(data) else bytes(view[: self.size])
            finally:
                view.release()
        buffer = self._growing()
        if self._room != self.size:
            buffer.truncate(self.size)
        return buffer.getvalue()

    def _growing(self) -> io.BytesIO:
        """The doubling buffer, holding what came so far (a body longer than announced moves
        its bytes there from the in-place value)."""
        if self._buffer is None:
            self._buffer = io.BytesIO()
            view = self._view
            if view is not None:
                self._buffer.write(view[: self.size])
                self._room = self.size
                view.release()
            self._view = self._data = None
        return self._buffer

    def _make_room(self, buffer: io.BytesIO, end: int) -> None:
        """Let the buffer hold ``end`` bytes, doubling it (up to the announced size, unless
        more came): a few reallocations per body instead of BytesIO's one per eighth more,
        each of which may be a copy."""
        if end <= self._room:
            return
        doubled = max(2 * self._room, FIRST_ROOM)
        room = max(end, min(self.length, doubled) if end <= self.length else doubled)
        try:
            buffer.seek(room - 1)
            buffer.write(b"\0")
        except (MemoryError, OverflowError):
            raise BodyDoesNotFit(self.length) from None
        buffer.seek(self.size)
        self._room = room
