"""ClientFrames: binary messages are taken, every other byte reaches the library in order.

The stream is cut into reads at arbitrary points. Whatever the cuts, the outcome must be the
one a frame-by-frame model gives: a binary message begun where the library is not inside a
fragmented message of its own, masked, within the limit, while the connection allows it, is
taken (its frames' unmasked payloads joined, control frames between them given), every other
frame is given byte for byte, and a frame that breaks the rules inside a taken message fails
the connection (1002, or 1009 over the limit), after which nothing more is taken or given.
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
        self.events: list[tuple[object, ...]] = []
        self.allow = allow

    def may_take(self) -> bool:
        return self.allow

    def take(self, piece: bytes, first: bool, last: bool) -> None:
        self.events.append(("take", bytes(piece), first, last))

    def give(self, data: bytes | memoryview) -> None:
        self.events.append(("give", bytes(data)))

    def fail(self, code: int, reason: str) -> None:
        self.events.append(("fail", code))

    def frames(self, limit: int | None = LIMIT) -> ClientFrames:
        return ClientFrames(self.may_take, self.take, self.give, limit, self.fail)

    def outcome(self) -> list[tuple[object, ...]]:
        """Gives joined, taken messages joined (counted when their last piece came), fail."""
        found: list[tuple[object, ...]] = []
        message: list[bytes] | None = None
        for event in self.events:
            if event[0] == "give":
                if found and found[-1][0] == "give":
                    found[-1] = ("give", found[-1][1] + event[1])  # type: ignore[operator]
                else:
                    found.append(event)
            elif event[0] == "take":
                _, piece, first, last = event
                assert first == (message is None), "a piece outside a message, or a new one"
                message = [*(message or []), piece]  # type: ignore[list-item]
                if last:
                    found.append(("message", b"".join(message)))
                    message = None
            else:
                found.append(event)
        return found


def model(frames: list[tuple[bytes, bytes]], allow: bool, limit: int = LIMIT) -> list[object]:
    """What ClientFrames must do with whole frames, decided one frame at a time."""
    found: list[tuple[object, ...]] = []

    def give(wire: bytes) -> None:
        if found and found[-1][0] == "give":
            found[-1] = ("give", found[-1][1] + wire)  # type: ignore[operator]
        else:
            found.append(("give", wire))

    taking: list[bytes] | None = None
    fragmented = False
    for wire, payload in frames:
        first, masked = wire[0], bool(wire[1] & 0x80)
        control = first & 0x0F >= 8
        fin = bool(first & 0x80)
        if taking is not None and not control:
            if first & 0x7F or not masked:
                return [*found, ("fail", 1002)]
            if sum(map(len, taking)) + len(payload) > limit:
                return [*found, ("fail", 1009)]
            taking.append(payload)
            if fin:
                found.append(("message", b"".join(taking)))
                taking = None
            continue
        if (
            first in (0x82, 0x02)
            and masked
            and not fragmented
            and taking is None
            and len(payload) <= limit
            and allow
        ):
            taking = [payload]
            if fin:
                found.append(("message", payload))
                taking = None
            continue
        if not control:
            fragmented = not fin
        give(wire)
    return found


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


@settings(max_examples=400, deadline=None)
@given(streams(), st.booleans())
def test_every_frame_is_taken_or_given_as_the_model_says(
    stream: tuple[list[tuple[bytes, bytes]], list[int]], allow: bool
) -> None:
    frames, cuts = stream
    recorder = Recorder(allow)
    feed_in_reads(recorder.frames(), b"".join(wire for wire, _ in frames), cuts)
    assert recorder.outcome() == model(frames, allow)


def test_whole_binary_frames_read_at_once_are_all_taken() -> None:
    payloads = [b"", b"x" * 125, b"y" * 126, os.urandom(65536), os.urandom(1000)]
    recorder = Recorder()
    recorder.frames().feed(b"".join(client_frame(0x82, p) for p in payloads))
    assert recorder.events == [("take", p, True, True) for p in payloads]


def test_a_frame_split_across_reads_is_taken_piece_by_piece() -> None:
    data = os.urandom(5000)
    wire = client_frame(0x82, data)
    recorder = Recorder()
    splitter = recorder.frames()
    for begin, end in itertools.pairwise([0, 9, 1002, 1003, 3332, len(wire)]):
        splitter.feed(wire[begin:end])  # (cuts at every offset of the mask's four bytes)
    assert recorder.events[0][2] is True and recorder.events[-1][3] is True
    assert recorder.outcome() == [("message", data)]
    splitter.feed(client_frame(0x82, b"next"))
    assert recorder.events[-1] == ("take", b"next", True, True)


def test_a_payload_in_4k_frames_with_pings_between_is_one_message() -> None:
    data = os.urandom(20_000)
    parts = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    ping = client_frame(0x89, b"ping")
    wire = b""
    for index, part in enumerate(parts):
        first = (0x02 if index == 0 else 0x00) | (0x80 if index == len(parts) - 1 else 0)
        wire += client_frame(first, part) + (ping if index == 1 else b"")
    recorder = Recorder()
    feed_in_reads(recorder.frames(), wire, [100, 4200, 9000, 9001, 15000])
    assert recorder.outcome() == [("give", ping), ("message", data)]


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
    assert recorder.outcome() == [("message", b"z" * 300)]


def test_inside_the_librarys_fragmented_message_nothing_is_taken() -> None:
    recorder = Recorder(allow=False)  # (the library gets the message's first frame)
    splitter = recorder.frames()
    opened = client_frame(0x02, b"first")
    splitter.feed(opened)
    recorder.allow = True
    inside = client_frame(0x82, b"not allowed here")
    splitter.feed(inside)
    assert recorder.events == [("give", opened), ("give", inside)]


def test_a_rule_broken_inside_a_taken_message_fails_the_connection() -> None:
    opened = client_frame(0x02, b"first")
    for breaking, code in (
        (client_frame(0x82, b"a new message"), 1002),
        (client_frame(0x80, b"unmasked", masked=False), 1002),
        (client_frame(0xC0, b"reserved bit"), 1002),
        (client_frame(0x80, b"q" * 200), 1009),  # the message goes over the limit
    ):
        recorder = Recorder()
        splitter = recorder.frames(limit=100)
        splitter.feed(opened + breaking)
        splitter.feed(client_frame(0x82, b"after"))  # nothing more is read
        assert recorder.outcome() == [("fail", code)], breaking


def test_what_came_before_is_given_before_a_frame_is_taken() -> None:
    """The library must see a close frame before the connection is asked about the next one."""
    close = client_frame(0x88, struct.pack("!H", 1000))
    data = client_frame(0x82, b"after the close")
    recorder = Recorder()
    asked_after: list[list[tuple[object, ...]]] = []

    def may_take() -> bool:
        asked_after.append(list(recorder.events))
        return False  # the library closed the connection on the close frame

    ClientFrames(may_take, recorder.take, recorder.give, None, recorder.fail).feed(close + data)
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
