"""RFC 6455 frames on the server side: the frames of binary messages, which need no library,
and where the others begin and end.

Nearly every frame the target sends belongs to a binary message: its control message, whole in
one frame, and its payload, in one frame or (as a Go target writes it) in frames of 4 KiB. A
frame is masked, has no reserved bits and fits the limit. :class:`ClientFrames` takes a binary
message's frames straight from the bytes read, a piece at a time where a frame spans reads
(unmasked in C by ``websockets``' own ``apply_mask``), and hands every other byte to the
WebSocket library unchanged: control frames (also between a message's frames), text, a message
the connection does not let it take, anything malformed. For that it keeps track of where the
library's frames begin, so it can only start a message where the library expects the next
frame, and never while the library is in the middle of a fragmented message of its own. Once
it has begun a message it takes every data frame until the message ends; a frame that breaks
the rules inside it (a new message, an unmasked frame, reserved bits, a message over the limit)
fails the connection, as the library would (close code 1002 or 1009).

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
#: Opcode 2 without ``FIN``: the first frame of a binary message of several.
_BINARY = 0x02
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
    """Splits what a client sends between the binary messages taken here and the rest, given
    to the WebSocket library in order.

    ``may_take()`` says whether a binary message may be taken now (the connection is open,
    the application reads messages in parts, no extension is in use); ``take(piece, first,
    last)`` gets the unmasked payload of a taken message piece by piece (``first``: it begins
    a message, ``last``: it ends it); ``give(data)`` passes bytes to the library;
    ``fail(code, reason)`` fails the connection (nothing more is read after it).
    """

    __slots__ = (
        "_dead", "_fail", "_fin", "_fragmented", "_give", "_head", "_left", "_limit", "_mask",
        "_may_take", "_offset", "_owed", "_size", "_take", "_taking",
    )  # fmt: skip

    def __init__(
        self,
        may_take: Callable[[], bool],
        take: Callable[[bytes, bool, bool], None],
        give: Callable[[bytes | memoryview], None],
        limit: int | None,
        fail: Callable[[int, str], None],
    ) -> None:
        self._may_take = may_take
        self._take = take
        self._give = give
        self._limit = limit
        self._fail = fail
        self._owed = 0  # bytes of a frame the library has begun, not yet given to it
        self._head = b""  # the start of a frame whose head is not complete yet
        self._fragmented = False  # the library is inside a message of several frames
        self._taking = False  # inside a binary message taken here (its last frame not ended)
        self._size = 0  # the payload bytes of that message so far
        self._left = 0  # payload bytes of the frame being taken, still to come
        self._mask = b""  # that frame's mask, and how far into its payload it has come
        self._offset = 0
        self._fin = False  # that frame ends its message
        self._dead = False  # the connection was failed

    def feed(self, data: bytes) -> None:
        """Take or give everything in ``data`` (the start of a split head is kept for later)."""
        if self._dead:
            return
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
            if self._left:  # the rest of a frame being taken
                step = min(self._left, size - pos)
                self._piece(data, pos, pos + step, first=False)
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
            masked = data[pos + 1] & _MASKED
            control = first & _OPCODE >= _FIRST_CONTROL
            if self._taking and not control:  # the next frame of a message taken here
                if given >= 0:
                    self._give_range(data, given, pos)
                    given = -1
                if first & ~_FIN & 0xFF or not masked:  # not a masked continuation
                    self._failed(1002, "expected a masked continuation frame")
                    return
                if not self._fits(length):
                    self._failed(1009, "message too big")
                    return
                if end <= size:  # whole in this read (the usual case: taken in one step)
                    last = bool(first & _FIN)
                    self._taking = not last
                    self._take(
                        apply_mask(memoryview(data)[start:end], data[start - 4 : start]),
                        False,
                        last,
                    )
                    pos = end
                    continue
                pos = self._frame(data, start, end, bool(first & _FIN), first=False)
                continue
            if (
                first in (WHOLE_BINARY, _BINARY)
                and masked
                and not self._fragmented
                and not self._taking
                and self._fits(length, new=True)
            ):
                if given >= 0:  # the library sees what came before first (it may close)
                    self._give_range(data, given, pos)
                    given = -1
                if self._may_take():
                    self._taking = True
                    self._size = 0
                    self._fits(length)
                    pos = self._frame(data, start, end, first == WHOLE_BINARY, first=True)
                    continue
            if not control:  # a data frame: a message of several frames
                self._fragmented = not first & _FIN  # is open until one ends with FIN
            if given < 0:
                given = pos
            self._owed = max(end - size, 0)
            pos = min(end, size)
        if given >= 0:
            self._give_range(data, given, size)

    def _fits(self, length: int, new: bool = False) -> bool:
        """Whether a frame of ``length`` keeps its message within the limit (counted unless
        ``new``: a message not begun yet)."""
        total = length if new else self._size + length
        if self._limit is not None and total > self._limit:
            return False
        if not new:
            self._size = total
        return True

    def _frame(self, data: bytes, start: int, end: int, fin: bool, first: bool) -> int:
        """Begin taking a frame whose payload is ``data[start:end]`` (``end`` may lie beyond
        this read); where reading goes on."""
        self._mask = data[start - 4 : start]
        self._offset = 0
        self._fin = fin
        self._left = end - start
        stop = min(end, len(data))
        self._piece(data, start, stop, first)
        return stop

    def _piece(self, data: bytes, begin: int, end: int, first: bool) -> None:
        """Take the payload bytes ``data[begin:end]`` of the frame being taken."""
        turn = self._offset % 4
        mask = self._mask[turn:] + self._mask[:turn] if turn else self._mask
        self._left -= end - begin
        self._offset += end - begin
        last = self._fin and not self._left
        if last:
            self._taking = False
        if end > begin or first or last:
            self._take(apply_mask(memoryview(data)[begin:end], mask), first, last)

    def _failed(self, code: int, reason: str) -> None:
        self._dead = True
        self._fail(code, reason)

    def _give_range(self, data: bytes, begin: int, end: int) -> None:
        self._give(data if begin == 0 and end == len(data) else memoryview(data)[begin:end])
