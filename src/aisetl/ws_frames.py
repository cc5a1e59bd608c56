"""RFC 6455 frames on the server side: the one frame shape that needs no library, and where
the others begin and end.

Nearly every frame the target sends is one whole binary message in one frame: ``FIN`` set, no
reserved bits, masked, its length within the limit. :class:`ClientFrames` takes such a frame,
when it lies whole in what was read, straight from the bytes (unmasked in C by
``websockets``' own ``apply_mask``), and hands every other byte to the WebSocket library
unchanged: control frames, fragments, text, a frame split across reads, anything malformed.
For that it keeps track of where the library's frames begin, so it can only take a frame that
starts where the library expects the next one, and never takes one while the library is in the
middle of a fragmented message.

:func:`server_head` builds the head of an unmasked frame the server sends (a whole message in
one frame), which is all of a small answer's framing.
"""

from __future__ import annotations

from collections.abc import Callable

try:  # websockets' C helper, its pure-Python twin where the speedups are not built
    from websockets.speedups import apply_mask  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - websockets always ships a wheel with the speedups
    from websockets.utils import apply_mask

#: ``FIN`` and opcode 2: a binary message in one frame, no extension bits.
WHOLE_BINARY = 0x82
#: ``FIN`` and opcode 1: a text message in one frame.
WHOLE_TEXT = 0x81
_FIN = 0x80
_MASKED = 0x80
_OPCODE = 0x0F
_FIRST_CONTROL = 0x8


def frame_head(data: bytes | memoryview, pos: int) -> tuple[int, int, int] | None:
    """The frame starting at ``pos``: (its first byte, its payload length, where its payload
    starts), or ``None`` when its head is not complete yet."""
    size = len(data)
    if size - pos < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    start = pos + 6 if second & _MASKED else pos + 2
    if length == 126:
        start += 2
        if start > size:
            return None
        length = data[pos + 2] << 8 | data[pos + 3]
    elif length == 127:
        start += 8
        if start > size:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    elif start > size:
        return None
    return data[pos], length, start


def server_head(first: int, length: int) -> bytes:
    """The head of an unmasked frame of ``length`` payload bytes (``first``: FIN and opcode)."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


class ClientFrames:
    """Splits what a client sends between whole binary frames taken here and the rest, given
    to the WebSocket library in order.

    ``may_take()`` says whether a whole binary frame may be taken now (the connection is open,
    the application reads messages in parts, no extension is in use); ``take(payload)`` gets
    its unmasked payload; ``give(data)`` passes bytes to the library.
    """

    __slots__ = ("_fragmented", "_give", "_head", "_limit", "_may_take", "_owed", "_take")

    def __init__(
        self,
        may_take: Callable[[], bool],
        take: Callable[[bytes], None],
        give: Callable[[bytes | memoryview], None],
        limit: int | None,
    ) -> None:
        self._may_take = may_take
        self._take = take
        self._give = give
        self._limit = limit
        self._owed = 0  # bytes of a frame the library has begun, not yet given to it
        self._head = b""  # the start of a frame whose head is not complete yet
        self._fragmented = False  # the library is inside a message of several frames

    def feed(self, data: bytes) -> None:
        """Take or give everything in ``data`` (the start of a split head is kept for later)."""
        if self._head:
            data, self._head = self._head + data, b""
        size = len(data)
        pos = 0
        given = -1  # where the bytes not yet given to the library begin (-1: none pending)
        while pos < size:
            if self._owed:
                if given < 0:
                    given = pos
                step = min(self._owed, size - pos)
                self._owed -= step
                pos += step
                continue
            head = frame_head(data, pos)
            if head is None:
                if given >= 0:
                    self._give_range(data, given, pos)
                self._head = data[pos:]  # at most 13 bytes: the head of the next frame
                return
            first, length, start = head
            end = start + length
            if (
                first == WHOLE_BINARY
                and end <= size
                and data[pos + 1] & _MASKED
                and not self._fragmented
                and (self._limit is None or length <= self._limit)
            ):
                if given >= 0:  # the library sees what came before first (it may close)
                    self._give_range(data, given, pos)
                    given = -1
                if self._may_take():
                    self._take(apply_mask(memoryview(data)[start:end], data[start - 4 : start]))
                    pos = end
                    continue
            if first & _OPCODE < _FIRST_CONTROL:  # a data frame: a message of several frames
                self._fragmented = not first & _FIN  # is open until one ends with FIN
            if given < 0:
                given = pos
            self._owed = max(end - size, 0)
            pos = min(end, size)
        if given >= 0:
            self._give_range(data, given, size)

    def _give_range(self, data: bytes, begin: int, end: int) -> None:
        self._give(data if begin == 0 and end == len(data) else memoryview(data)[begin:end])
