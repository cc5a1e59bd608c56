"""FastAPI over ws, frames cut at any byte: whole binary frames skip websockets, the rest do not.

aisetl reads a whole binary frame that arrived in one read itself and gives every other byte
to websockets (:mod:`aisetl.ws_frames`). Over a real socket, tasks are written in pieces that
cut frame heads, masks and payloads, mixed with fragmented payloads, a text control message and
a ping; every task must be answered, in order, byte-exact. A malformed frame still closes its
connection (websockets' rules), and the server goes on serving.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from aisetl.protocol import WS_PATH
from aisetl.target import ETL
from aisetl.target.wire import ws_control_message
from tests.test_ws_frames_split import client_frame
from tests.transformers import upper

from .conftest import Launcher, health_ok, payload

SIZES = [0, 1, 125, 126, 1000, 65535, 65536, 200_000, 7]


class Client:
    """A ws connection driven by websockets' sans-I/O client, written to in chosen pieces."""

    def __init__(self, etl: ETL, timeout: float = 30.0) -> None:
        self.uri = parse_uri(etl.url().replace("http://", "ws://", 1) + WS_PATH)
        self.protocol = ClientProtocol(self.uri, max_size=None)
        self.sock = socket.create_connection((self.uri.host, self.uri.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = time.monotonic() + timeout
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(self.pending())
        events = self.events(lambda seen: any(isinstance(e, Response) for e in seen))
        response = next(e for e in events if isinstance(e, Response))
        assert response.status_code == 101, response

    def pending(self) -> bytes:
        return b"".join(self.protocol.data_to_send())

    def write_in_pieces(self, data: bytes, cuts: list[int]) -> None:
        """Write ``data`` cut at ``cuts``, pausing between pieces so each is its own read."""
        bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
        for begin, end in itertools.pairwise(bounds):
            self.sock.sendall(data[begin:end])
            time.sleep(0.005)

    def events(self, enough: object) -> list[object]:
        """Events until ``enough(events)`` says so (bounded by the deadline)."""
        seen: list[object] = []
        while not enough(seen):  # type: ignore[operator]
            assert time.monotonic() < self.deadline, f"no answer in time; so far {seen!r:.300}"
            received = self.sock.recv(1 << 20)
            if not received:
                self.protocol.receive_eof()
                seen.extend(self.protocol.events_received())
                seen.append(EOFError())
                return seen
            self.protocol.receive_data(received)
            seen.extend(self.protocol.events_received())
        return seen

    def task(self, path: str, data: bytes) -> list[bytes]:
        """Send one task whole; the data of the frames that answer it."""
        self.protocol.send_binary(ws_control_message(path))
        self.protocol.send_binary(data)
        self.sock.sendall(self.pending())
        events = self.events(lambda seen: any(isinstance(e, Frame) for e in seen))
        return [e.data for e in events if isinstance(e, Frame)]

    def close(self) -> None:
        self.sock.close()


def assert_a_new_connection_is_served(etl: ETL, path: str) -> None:
    """After a connection was closed for a bad frame: a new one gets its task answered."""
    client = Client(etl)
    try:
        assert client.task(path, b"after") == [b"AFTER"]
    finally:
        client.close()


@pytest.fixture
def etl(launch: Launcher) -> Iterator[ETL]:
    yield launch("pieces-upper", "tests.transformers:Upper", "fastapi")


def cuts_for(data: bytes, frame_starts: list[int]) -> list[int]:
    """Cuts inside every frame's head and mask, and inside its payload."""
    cuts = []
    for start in frame_starts:
        cuts += [start + 1, start + 3, start + 7, start + 12, start + 40]
    return cuts


def test_tasks_cut_anywhere_are_answered_in_order(etl: ETL) -> None:
    client = Client(etl)
    try:
        proto = client.protocol
        wire = b""
        starts: list[int] = []
        expected: list[bytes] = []
        for index, size in enumerate(SIZES):
            data = payload(size, seed=index)
            control = ws_control_message(f"pieces/{index}.bin")
            starts.append(len(wire))
            if index == 4:
                proto.send_text(control)  # a server should take a text control message too
            else:
                proto.send_binary(control)
            wire += client.pending()
            starts.append(len(wire))
            if index in (2, 6) and size > 4:  # a payload in three frames
                third = size // 3
                proto.send_binary(data[:third], fin=False)
                proto.send_continuation(data[third : 2 * third], fin=False)
                proto.send_continuation(data[2 * third :], fin=True)
            else:
                proto.send_binary(data)
            wire += client.pending()
            if index == 3:
                starts.append(len(wire))
                proto.send_ping(b"ping")
                wire += client.pending()
            expected.append(upper(data))
        # the first half cut everywhere, the second half as one write (frames taken at once)
        half = starts[len(starts) // 2]
        client.write_in_pieces(wire[:half], cuts_for(wire, starts))
        client.sock.sendall(wire[half:])

        def done(seen: list[object]) -> bool:
            return sum(isinstance(e, Frame) and e.opcode is Opcode.BINARY for e in seen) >= len(
                SIZES
            )

        events = client.events(done)
        answers = [e.data for e in events if isinstance(e, Frame) and e.opcode is Opcode.BINARY]
        pongs = [e.data for e in events if isinstance(e, Frame) and e.opcode is Opcode.PONG]
        texts = [e.data for e in events if isinstance(e, Frame) and e.opcode is Opcode.TEXT]
        assert texts == []
        assert pongs == [b"ping"]
        assert [len(a) for a in answers] == [len(e) for e in expected]
        assert answers == expected
    finally:
        client.close()
    assert health_ok(etl)


def test_a_malformed_frame_closes_its_connection_and_the_server_serves_on(etl: ETL) -> None:
    client = Client(etl)
    try:
        assert client.task("pieces/ok.bin", b"fine") == [b"FINE"]
        # a binary frame with a reserved bit no extension was agreed for (RFC 6455 §5.2)
        client.sock.sendall(bytes((0xC2, 0x80 | 3)) + b"\0\0\0\0" + b"bad")
        events = client.events(lambda seen: any(isinstance(e, EOFError) for e in seen))
        closes = [e for e in events if isinstance(e, Frame) and e.opcode is Opcode.CLOSE]
        assert closes and closes[0].data[:2] == (1002).to_bytes(2, "big")  # protocol error
    finally:
        client.close()
    assert health_ok(etl)
    assert_a_new_connection_is_served(etl, "pieces/again.bin")


def test_an_answer_ready_at_once_waits_for_the_tasks_before_it(etl: ETL, tmp_path: Path) -> None:
    """Once quick tasks are answered where they are read (after a warm-up), a task that is not
    (its object is read from a file, FQN) and quick ones behind it, in one write: the quick
    answers wait for it, in arrival order."""
    client = Client(etl)
    try:
        for i in range(40):  # past the streak that runs the quick transform on the loop
            assert client.task(f"order/warm-{i}", b"warm") == [b"WARM"]
        stored = payload(3000, seed=11)
        file = tmp_path / "stored.bin"
        file.write_bytes(stored)
        proto = client.protocol
        proto.send_binary(ws_control_message("order/from-file", fqn=str(file)))  # no payload
        quick = [payload(50 + i, seed=20 + i) for i in range(3)]
        for i, data in enumerate(quick):
            proto.send_binary(ws_control_message(f"order/quick-{i}"))
            proto.send_binary(data)
        client.sock.sendall(client.pending())

        def done(seen: list[object]) -> bool:
            return sum(isinstance(e, Frame) and e.opcode is Opcode.BINARY for e in seen) >= 4

        events = client.events(done)
        answers = [e.data for e in events if isinstance(e, Frame) and e.opcode is Opcode.BINARY]
        assert answers == [upper(stored), *map(upper, quick)]
    finally:
        client.close()
    assert health_ok(etl)


def test_tasks_beyond_the_inflight_bound_wait_and_keep_their_order(
    launch: Launcher, tmp_path: Path
) -> None:
    """``AISETL_WS_INFLIGHT=1``: tasks read from files (not answered at once) and quick ones,
    all in one write; the connection holds one unanswered task at a time, and every answer
    comes, in arrival order."""
    etl = launch(
        "pieces-inflight", "tests.transformers:Upper", "fastapi", env={"AISETL_WS_INFLIGHT": "1"}
    )
    client = Client(etl)
    try:
        for i in range(40):  # past the streak that runs the quick transform on the loop
            assert client.task(f"bound/warm-{i}", b"warm") == [b"WARM"]
        proto = client.protocol
        expected = []
        for i in range(6):
            data = payload(200 + i, seed=40 + i)
            if i % 2 == 0:
                file = tmp_path / f"stored-{i}.bin"
                file.write_bytes(data)
                proto.send_binary(ws_control_message(f"bound/file-{i}", fqn=str(file)))
            else:
                proto.send_binary(ws_control_message(f"bound/quick-{i}"))
                proto.send_binary(data)
            expected.append(upper(data))
        client.sock.sendall(client.pending())

        def done(seen: list[object]) -> bool:
            return sum(isinstance(e, Frame) and e.opcode is Opcode.BINARY for e in seen) >= 6

        events = client.events(done)
        answers = [e.data for e in events if isinstance(e, Frame) and e.opcode is Opcode.BINARY]
        assert answers == expected
    finally:
        client.close()
    assert health_ok(etl)


@pytest.mark.parametrize(
    ("breaking", "why"),
    [
        (client_frame(0x82, b"a new message"), "a new message inside the payload"),
        (client_frame(0x80, b"the rest", masked=False), "an unmasked continuation"),
        (client_frame(0xC0, b"the rest"), "a reserved bit"),
    ],
    ids=["new-message", "unmasked", "reserved-bit"],
)
def test_a_rule_broken_inside_a_payload_closes_with_1002(
    etl: ETL, breaking: bytes, why: str
) -> None:
    """A payload in frames (taken by aisetl, not by websockets) broken by a frame the protocol
    forbids there: the connection is closed with 1002, as websockets would, nothing is
    answered for the task, and the server goes on serving."""
    client = Client(etl)
    try:
        client.protocol.send_binary(ws_control_message(f"broken/{why}"))
        wire = client.pending() + client_frame(0x02, b"the first part") + breaking
        client.sock.sendall(wire)

        def closed(seen: list[object]) -> bool:
            return any(
                isinstance(e, EOFError) or (isinstance(e, Frame) and e.opcode is Opcode.CLOSE)
                for e in seen
            )

        events = client.events(closed)
    finally:
        client.close()
    frames = [e for e in events if isinstance(e, Frame)]
    assert not [f for f in frames if f.opcode is Opcode.BINARY], frames  # no answer
    (close,) = [f for f in frames if f.opcode is Opcode.CLOSE]
    assert int.from_bytes(close.data[:2], "big") == 1002, close
    assert health_ok(etl)
    assert_a_new_connection_is_served(etl, "broken/after")
