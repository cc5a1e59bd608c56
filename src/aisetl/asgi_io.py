"""ASGI body I/O: read a request body (whole, or as a blocking reader) and send a reply.

A streamed reply is pulled chunk by chunk on the transform threads; one whose stream fails
after the status line was sent raises :class:`StreamAborted`, so the ASGI server drops the
connection and the target sees a read error instead of a truncated object.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aisetl._uvicorn_http import receive_whole, send_whole
from aisetl.handoff import Handoff
from aisetl.reply import Reply
from aisetl.sized_body import SizedBody
from aisetl.sources import BodyTooLarge, ClientGone, Failure

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive, limit: int, length: int | None = None) -> bytes:
    """The whole request body, copied once into one buffer.

    With a ``Content-Length`` the buffer has its final size from the start (no regrowth, and
    ``getvalue`` hands it over without a copy); otherwise it grows as chunks come.
    """
    if length is not None and (not limit or length <= limit):
        body = await receive_whole(receive, length)
        if body is not None:  # our uvicorn protocol: the whole body, in one buffer
            if limit and len(body) > limit:
                raise BodyTooLarge(limit)
            return body
    first = b""
    buffer: SizedBody | None = None
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("client disconnected before the body was complete")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if limit and size > limit:
                raise BodyTooLarge(limit)
            if buffer is not None:
                buffer.add(chunk)
            elif first:
                sized = length is not None and length >= size
                buffer = SizedBody(length if sized and length else 0)
                buffer.add(first)
                buffer.add(chunk)
            else:
                first = chunk
        if not message.get("more_body", False):
            break
    return first if buffer is None else buffer.value()


async def _next(receive: Receive) -> Message:
    return await receive()


class ReceiveReader(io.RawIOBase):
    """A blocking reader of an ASGI request body, for a transform running on a worker thread."""

    def __init__(self, receive: Receive, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._receive = receive
        self._loop = loop
        self._limit = limit
        self._pending = memoryview(b"")
        self._size = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if self._done:
                return 0
            message = asyncio.run_coroutine_threadsafe(_next(self._receive), self._loop).result()
            if message["type"] == "http.disconnect":
                raise ClientGone("client disconnected before the body was complete")
            chunk = message.get("body", b"")
            self._size += len(chunk)
            if self._limit and self._size > self._limit:
                raise BodyTooLarge(self._limit)
            self._pending = memoryview(chunk)
            self._done = not message.get("more_body", False)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class StreamAborted(Exception):
    """Raised to make the ASGI server drop a connection whose reply cannot be completed."""


async def send_reply(
    send: Send, reply: Reply, threads: Handoff | None = None, head_only: bool = False
) -> None:
    """Send a reply; a stream is pulled chunk by chunk on the transform threads."""
    headers = reply.raw_headers()
    if reply.stream is None:
        if await send_whole(send, reply.status, headers, reply.body, head_only):
            return
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else reply.body})
        return
    assert threads is not None, "a streamed reply needs the transform threads"
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    stream = reply.stream
    try:
        while True:
            chunk = await threads.run(next, stream, None)
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Failure as failure:
        # The status line is gone: break the framing so the target sees a read error.
        raise StreamAborted(f"reply aborted mid-stream: {failure.message}") from None
    finally:
        reply.close()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
