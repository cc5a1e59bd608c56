"""A frame written after the peer began closing is a client gone, not an escaped exception.

websockets raises ``InvalidState`` for a frame sent once a close frame has come in; uvicorn's
own ``send`` turns that into ``ClientDisconnected`` (an ``OSError``, which the ws session
handles as a target that hung up). Our frame protocol writes frames itself in two places: a
held small answer (framed by aisetl, which reads the connection's state first) and a message
sent in parts (framed by websockets). Both must do the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.protocols.utils import ClientDisconnected
from websockets.exceptions import InvalidState
from websockets.protocol import State

from aisetl._uvicorn_ws import MORE, build


class _ClosingConnection:
    """websockets' sans-I/O connection after the peer's close frame arrived."""

    state = State.CLOSING
    extensions: list[Any] = []

    def send_binary(self, data: bytes, fin: bool = True) -> None:
        raise InvalidState("connection is closing")

    send_text = send_binary

    def send_continuation(self, data: bytes, fin: bool) -> None:
        raise InvalidState("connection is closing")

    def data_to_send(self) -> list[bytes]:
        return []


class _Transport:
    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        raise AssertionError("nothing may be written")

    writelines = write


class _Base:
    """The state of uvicorn's protocol that the frame protocol reads, past its handshake."""

    def __init__(self) -> None:
        self.conn = _ClosingConnection()
        self.transport = _Transport()
        self.loop = asyncio.get_running_loop()
        self.writable = asyncio.Event()
        self.writable.set()
        self.disconnected = False
        self.close_sent = False
        self.handshake_complete = True
        self.initial_response = None

    async def send(self, message: Any) -> None:
        raise AssertionError("the frame protocol writes these frames itself")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "bytes": b"a small whole answer"},
        {"type": "websocket.send", "text": "a small text answer"},
        {"type": "websocket.send", "bytes": b"the first part", MORE: True},
    ],
    ids=["held-bytes", "held-text", "in-parts"],
)
def test_a_frame_after_the_peer_began_closing_is_a_client_gone(message: dict[str, Any]) -> None:
    protocol_class = build(_Base, ClientDisconnected, InvalidState, State.OPEN)

    async def scenario() -> None:
        protocol = protocol_class()
        protocol.aisetl_frames = True
        with pytest.raises(ClientDisconnected):
            await protocol.send(message)

    asyncio.run(scenario())
