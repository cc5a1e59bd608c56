"""WebSocketSession.take_now: a message handled in the protocol's read leaves the reader to
read the next one as the task rules then ask (no socket: the session's own queue and state)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aisetl._uvicorn_ws import MORE
from aisetl.config import Settings
from aisetl.flow import Flow
from aisetl.light_queue import LightQueue
from aisetl.loader import bind_framework
from aisetl.ws_protocol import CONTROL_MAX, Oversized
from aisetl.ws_session import WebSocketSession

from .transformers import Upper


@pytest.fixture(autouse=True)
def _target_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIS_TARGET_URL", "http://127.0.0.1:1")  # (nothing listens there)


def _session(receive: LightQueue[dict[str, object]]) -> WebSocketSession:
    server = bind_framework(Upper, "fastapi")()
    server.settings = Settings(target_url="http://127.0.0.1:1")

    async def send(message: object) -> None:  # (nothing is sent: no writer runs here)
        raise AssertionError(f"unexpected send {message!r:.80}")

    return WebSocketSession(
        Flow(server),
        None,  # type: ignore[arg-type]  # (no task reaches the pool here)
        None,  # type: ignore[arg-type]
        receive.get,
        send,
        logger=logging.getLogger("test-ws-take"),
        errors="text",
        inflight=8,
        frames=True,
    )


def test_the_payload_after_a_bad_control_message_taken_in_the_read_is_capped() -> None:
    """The control message is taken while the reader waits; the large message after it (the
    bad task's payload, in parts) must be read capped, as the rules ask after a bad control
    message, not joined whole in memory."""

    async def scenario() -> object:
        queue: LightQueue[dict[str, object]] = LightQueue()
        session = _session(queue)
        reader = asyncio.ensure_future(session._read())
        await asyncio.sleep(0)  # the reader now waits for a message
        assert session.take_now(b"this is not json", lambda data: True)
        big = b"x" * (CONTROL_MAX + 1)
        for part, more in ((big, True), (big, True), (b"end", False)):
            queue.put_nowait({"type": "websocket.receive", "bytes": part, MORE: more})
        return await asyncio.wait_for(reader, 5)

    assert asyncio.run(scenario()) == Oversized(2 * (CONTROL_MAX + 1) + 3)


def test_a_message_is_not_taken_while_the_reader_is_busy() -> None:
    """Until the reader waits for a message, take_now leaves every message to the queue."""

    async def scenario() -> bool:
        session = _session(LightQueue())
        return session.take_now(b'{"path": "b/o"}', lambda data: True)

    assert asyncio.run(scenario()) is False
