"""ClientFrames: whole binary frames are taken, every other byte reaches the library in order.

The stream is cut into reads at arbitrary points. Whatever the cuts, each frame must be either
taken whole (its unmasked payload, in its place among the rest) or given to the library byte
for byte, and a frame may be taken only when it is a whole binary message, masked, outside a
fragmented message, within the limit, and the connection allows it at that moment.
"""

from __future__ import annotations

import itertools
import os
import struct

import hypothesis.strategies as st
from hypothesis import given, settings

from aisetl.ws_frames import ClientFrames, frame_head, server_head

LIMIT = 70_000


def client_frame(
    first: int, payload: bytes, masked: bool = True, mask: bytes = b"\x11\x22\x33\x44"
) -> bytes:
    """A frame as a client writes it (``first``: FIN, reserved bits and opcode)."""
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 65536:
        head = bytes((first, bit | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, bit | 127)) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


class Recorder:
    def __init__(self, allow: bool = True) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.allow = allow

    def may_take(self) -> bool:
        return self.allow

    def take(self, payload: bytes) -> None:
        self.events.append(("take", payload))

    def give(self, data: bytes | memoryview) -> None:
        self.events.append(("give", bytes(data)))

    def frames(self, limit: int | None = LIMIT) -> ClientFrames:
        return ClientFrames(self.may_take, self.take, self.give, limit)


def check_conserved(
    frames: list[tuple[bytes, bytes]], events: list[tuple[str, bytes]]
) -> list[int]:
    """Each frame taken whole or given byte for byte, in order; the indices of those taken."""
    taken: list[int] = []
    pending = b""
    index = 0
    for kind, data in events:
        if kind == "give":
            pending += data
            continue
        while pending:  # the given bytes before this take are whole frames
            wire = frames[index][0]
            assert pending.startswith(wire), (index, pending[:20], wire[:20])
            pending = pending[len(wire) :]
            index += 1
        assert frames[index][1] == data, f"frame {index} taken with the wrong payload"
        taken.append(index)
        index += 1
    assert pending == b"".join(wire for wire, _ in frames[index:])
    return taken


# a frame: (first byte, payload size, masked)
FRAME_KINDS = st.sampled_from(
    [
        (0x82, None, True),  # a whole binary message: may be taken
        (0x82, None, True),
        (0x82, None, False),  # unmasked: the library refuses it
        (0x81, None, True),  # text
        (0x02, None, True),  # the first of several frames
        (0x00, None, True),  # a continuation
        (0x80, None, True),  # the last continuation
        (0x89, 4, True),  # ping
        (0x8A, 4, True),  # pong
        (0xC2, None, True),  # reserved bit set
    ]
)
SIZES = st.sampled_from([0, 1, 5, 125, 126, 127, 1000, 65535, 65536, LIMIT + 1])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    frames = []
    for first, fixed, masked in draw(st.lists(FRAME_KINDS, min_size=1, max_size=8)):
        size = fixed if fixed is not None else draw(SIZES)
        payload = os.urandom(size)
        frames.append((client_frame(first, payload, masked), payload))
    total = sum(len(wire) for wire, _ in frames)
    cuts = sorted(set(draw(st.lists(st.integers(0, total), max_size=12))))
    return frames, cuts


def feed_in_reads(splitter: ClientFrames, wire: bytes, cuts: list[int]) -> None:
    bounds = [0, *cuts, len(wire)]
    for begin, end in itertools.pairwise(bounds):
        if end > begin:
            splitter.feed(wire[begin:end])


@settings(max_examples=300, deadline=None)
@given(streams(), st.booleans())
def test_every_frame_is_taken_whole_or_given_in_order(
    stream: tuple[list[tuple[bytes, bytes]], list[int]], allow: bool
) -> None:
    frames, cuts = stream
    recorder = Recorder(allow)
    feed_in_reads(recorder.frames(), b"".join(wire for wire, _ in frames), cuts)
    taken = check_conserved(frames, recorder.events)
    fragmented = False
    for index, (wire, payload) in enumerate(frames):
        first = wire[0]
        if index in taken:
            assert allow and first == 0x82 and wire[1] & 0x80 and not fragmented
            assert len(payload) <= LIMIT
        if first & 0x0F < 8:
            fragmented = not first & 0x80


def test_whole_binary_frames_read_at_once_are_all_taken() -> None:
    payloads = [b"", b"x" * 125, b"y" * 126, os.urandom(65536), os.urandom(1000)]
    recorder = Recorder()
    recorder.frames().feed(b"".join(client_frame(0x82, p) for p in payloads))
    assert recorder.events == [("take", p) for p in payloads]


def test_a_frame_split_across_reads_goes_to_the_library() -> None:
    wire = client_frame(0x82, b"split payload")
    recorder = Recorder()
    splitter = recorder.frames()
    splitter.feed(wire[:9])
    splitter.feed(wire[9:])
    assert recorder.events == [("give", wire[:9]), ("give", wire[9:])]
    splitter.feed(client_frame(0x82, b"next"))  # the library finished that frame: back to taking
    assert recorder.events[-1] == ("take", b"next")


def test_a_split_head_waits_for_the_rest_and_the_frame_is_still_taken() -> None:
    wire = client_frame(0x82, b"z" * 300)  # 2 + 2 + 4 head bytes
    recorder = Recorder()
    splitter = recorder.frames()
    for cut in (1, 3, 7):
        splitter.feed(wire[:cut])
        assert recorder.events == []
        splitter = recorder.frames()
    splitter.feed(wire[:5])
    splitter.feed(wire[5:])
    assert recorder.events == [("take", b"z" * 300)]


def test_inside_a_fragmented_message_nothing_is_taken() -> None:
    wire = client_frame(0x02, b"first") + client_frame(0x82, b"not allowed here")
    recorder = Recorder()
    recorder.frames().feed(wire)
    assert recorder.events == [("give", wire)]


def test_what_came_before_is_given_before_a_frame_is_taken() -> None:
    """The library must see a close frame before the connection is asked about the next one."""
    close = client_frame(0x88, struct.pack("!H", 1000))
    data = client_frame(0x82, b"after the close")
    recorder = Recorder()
    asked_after: list[list[tuple[str, bytes]]] = []

    def may_take() -> bool:
        asked_after.append(list(recorder.events))
        return False  # the library closed the connection on the close frame

    ClientFrames(may_take, recorder.take, recorder.give, None).feed(close + data)
    assert asked_after == [[("give", close)]]
    assert recorder.events == [("give", close), ("give", data)]


def test_a_frame_above_the_limit_is_left_to_the_library() -> None:
    wire = client_frame(0x82, b"q" * 200)
    recorder = Recorder()
    recorder.frames(limit=199).feed(wire)
    assert recorder.events == [("give", wire)]


@given(st.integers(0, 70_000), st.sampled_from([0x81, 0x82]))
def test_frame_head_reads_what_server_head_writes(size: int, first: int) -> None:
    head = server_head(first, size)
    assert frame_head(head, 0) == (first, size, len(head))
    assert frame_head(head[:-1], 0) is None
