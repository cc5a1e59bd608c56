"""A small HTTP/1.1 server on ``asyncio.Protocol`` and ``httptools`` for the emulated target.

It feeds requests to one async handler and can inject faults at the socket level
(:mod:`aisetl.target.faults`). The client side lives in :mod:`aisetl.http_client`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import httptools

from aisetl.http_client import (
    SMALL_BODY,
    Body,
    HTTPClient,
    Response,
    TransportError,
    find_header,
    peer_address,
    reason_phrase,
    reset_transport,
    set_nodelay,
)
from aisetl.target import faults as F
from aisetl.target.faults import Fault, Faults
from aisetl.target.record import ENDPOINT, Record, Recorder

__all__ = ["Body", "HTTPClient", "HTTPServer", "Reply", "Request", "Response", "TransportError"]


# --- server ---------------------------------------------------------------------------------


class Request:
    """A complete request as received by :class:`HTTPServer`."""

    __slots__ = ("body", "headers", "method", "path", "peer", "query", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]],
        body: bytes,
        version: str,
        peer: str,
    ) -> None:
        self.method = method
        self.uri = uri
        self.path, _, self.query = uri.partition("?")
        self.headers = headers
        self.body = body
        self.version = version
        self.peer = peer

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive), or ``None``."""
        return find_header(self.headers, name)


class Reply:
    """What a handler answers: status, headers and a body (``Content-Length`` is added)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers)


Handler = Callable[[Request], Awaitable[Reply]]


class _ServerConnection(asyncio.Protocol):
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "?"
        self.dead = False
        self._queue: deque[tuple[Request, Fault | None, float, bool]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._fault: Fault | None = None
        self._started = 0.0
        self._paused = False
        self._receiving = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        set_nodelay(transport)
        self.peer = peer_address(transport.get_extra_info("peername"))
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.server._connections.discard(self)
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._abort()
        except httptools.HttpParserError:
            if not self.dead and self.transport is not None:
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n"
                    b"Connection: close\r\n\r\nBad Request"
                )
                self.transport.close()
            self.dead = True

    # httptools callbacks
    @property
    def idle(self) -> bool:
        """No request is being received or served."""
        return (
            not self._receiving
            and not self._queue
            and (self._worker is None or self._worker.done())
        )

    def on_message_begin(self) -> None:
        self._receiving = True
        self._url = b""
        self._headers = []
        self._chunks = []
        self._fault = None
        self._started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.dead:
            return
        expect = find_header(self._headers, "expect")
        if expect is not None and expect.lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        faults = self.server.faults
        if faults is None:
            return
        method = self.parser.get_method().decode("latin-1")
        uri = self._url.decode("utf-8", "surrogateescape")
        fault = faults.take(method, uri)
        if fault is None:
            return
        if fault.kind == F.RESET:
            self._record_fault(method, uri, fault)
            self._abort()
        else:
            self._fault = fault

    def on_body(self, body: bytes) -> None:
        if self.dead:
            return
        self._chunks.append(body)
        if self._fault is not None and self._fault.kind == F.RESET_MID_BODY:
            self._reset_now()

    def on_message_complete(self) -> None:
        self._receiving = False
        if self.dead:
            return
        if self._fault is not None and self._fault.kind == F.RESET_MID_BODY:
            self._reset_now()
            return
        request = Request(
            self.parser.get_method().decode("latin-1"),
            self._url.decode("utf-8", "surrogateescape"),
            self._headers,
            b"".join(self._chunks),
            self.parser.get_http_version(),
            self.peer,
        )
        self._queue.append((request, self._fault, self._started, self.parser.should_keep_alive()))
        if len(self._queue) > 8 and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._serve())

    def _reset_now(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        uri = self._url.decode("utf-8", "surrogateescape")
        assert self._fault is not None
        self._record_fault(method, uri, self._fault, sum(map(len, self._chunks)))
        self._abort()

    def _abort(self) -> None:
        self.dead = True
        if self.transport is not None:
            reset_transport(self.transport)

    def _record_fault(self, method: str, uri: str, fault: Fault, body_len: int = 0) -> None:
        self.server._record(
            Request(method, uri, self._headers, b"", "1.1", self.peer),
            None,
            self._started,
            fault.kind,
            body_len,
        )

    async def _serve(self) -> None:
        while self._queue and not self.dead:
            request, fault, started, keep_alive = self._queue.popleft()
            if self._paused and len(self._queue) <= 2 and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            if fault is not None and fault.kind == F.CLOSE:
                self.server._record(request, None, started, fault.kind)
                self.dead = True
                if self.transport is not None:
                    self.transport.close()
                return
            if fault is not None and fault.kind == F.DELAY:
                await asyncio.sleep(fault.seconds)
            if fault is not None and fault.kind == F.RESPOND:
                reply = Reply(fault.status, fault.body, list(fault.headers.items()))
            else:
                reply = await self.server._handle(request)
            if self.dead or self.transport is None:
                return
            try:
                data = _reply_bytes(request, reply, keep_alive)
            except Exception as exc:  # never leave the client waiting for an answer
                reply = Reply(500, f"cannot serialize the response: {exc}".encode())
                data = _reply_bytes(request, reply, keep_alive=False)
                keep_alive = False
            # Record first: whoever reads the response may look at the records right away.
            self.server._record(request, reply, started, fault.kind if fault else "")
            self.transport.writelines(data)
            if not keep_alive:
                self.dead = True
                self.transport.close()
                return


def _reply_bytes(request: Request, reply: Reply, keep_alive: bool) -> list[bytes]:
    """The response as buffers to write: one for small bodies, head and body for large ones."""
    status = reply.status
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
    has_length = False
    for name, value in reply.headers:
        if name.lower() == "content-length":
            has_length = True
        lines.append(f"{name}: {value}")
    no_body = status in (204, 304) or status < 200
    if not has_length and not no_body:
        lines.append(f"Content-Length: {len(reply.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    # Header values go out as UTF-8 bytes, as a Go server writes them.
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    if request.method == "HEAD" or no_body:
        return [head]
    if len(reply.body) > SMALL_BODY:
        return [head, reply.body]  # no copy of a large body
    return [head + reply.body]


class HTTPServer:
    """An HTTP/1.1 server on 127.0.0.1 that hands complete requests to ``handler``.

    ``faults`` (optional) is consulted for every request; ``recorder`` gets one
    :class:`~aisetl.target.record.Record` per exchange, tagged with ``node``.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        recorder: Recorder | None = None,
        node: str = "",
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.faults = faults
        self.recorder = recorder
        self.node = node
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_ServerConnection] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening (on an ephemeral port unless one was given)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def refuse(self, seconds: float) -> None:
        """Stop listening now and listen again after ``seconds`` (call on the loop).

        Idle keep-alive connections are closed too, so the peer's next request has to connect
        (and is refused); requests in progress finish normally.
        """
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._connections):
            if conn.idle and conn.transport is not None:
                conn.dead = True
                conn.transport.close()
        if self._reopen is not None:
            self._reopen.cancel()
        loop = asyncio.get_running_loop()
        self._reopen = loop.call_later(seconds, lambda: loop.create_task(self._listen_again()))

    async def _listen_again(self) -> None:
        self._reopen = None
        if not self._closed and self._server is None:
            await self.start()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        self._connections.clear()

    async def _handle(self, request: Request) -> Reply:
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Reply(500, f"internal error: {exc!r}".encode())

    def _record(
        self,
        request: Request,
        reply: Reply | None,
        started: float,
        fault: str,
        body_len: int | None = None,
    ) -> None:
        recorder = self.recorder
        if recorder is None or not recorder.enabled:
            return
        recorder.add(
            Record(
                side=ENDPOINT,
                target=self.node,
                method=request.method,
                uri=request.uri,
                headers=tuple(request.headers),
                body_len=len(request.body) if body_len is None else body_len,
                status=reply.status if reply else 0,
                response_headers=tuple(reply.headers) if reply else (),
                response_len=len(reply.body) if reply else 0,
                started=started,
                elapsed=time.monotonic() - started,
                fault=fault,
            )
        )
