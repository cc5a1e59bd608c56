"""Small, fast HTTP/1.1 client and server on ``asyncio.Protocol`` and ``httptools``.

The client sends request heads byte-for-byte as given (so a target's defects can be
reproduced), keeps connections alive per host, and reports transport failures with the
classification a Go target retries on (:class:`TransportError`). The server feeds requests
to one async handler and can inject faults at the socket level (:mod:`aisetl.target.faults`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from http import HTTPStatus
from typing import cast
from urllib.parse import urlsplit

import httptools

from aisetl.target import faults as F
from aisetl.target.faults import Fault, Faults
from aisetl.target.record import ENDPOINT, Record, Recorder

Body = bytes | Iterable[bytes] | AsyncIterable[bytes] | None

# Transport error kinds.
REFUSED = "refused"
RESET = "reset"
BROKEN_PIPE = "broken-pipe"
ABORTED = "aborted"
EOF = "eof"
TIMEOUT = "timeout"
MALFORMED = "malformed"
READ = "read"
#: Kinds a Go target retries (connection refused/reset, broken pipe, connection aborted).
RETRIABLE_KINDS = frozenset({REFUSED, RESET, BROKEN_PIPE, ABORTED})

_WRITE_CHUNK = 256 * 1024
_SMALL_BODY = 64 * 1024


class TransportError(Exception):
    """A request failed below HTTP: no (complete) response.

    ``kind`` is one of ``refused``, ``reset``, ``broken-pipe``, ``aborted``, ``eof``,
    ``timeout``, ``malformed`` or ``read``; ``after_headers`` tells whether the status line
    had already arrived (a failure while reading the body; ``status`` is then set).
    """

    def __init__(
        self, kind: str, message: str, *, after_headers: bool = False, status: int = 0
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.after_headers = after_headers
        self.status = status  # the response status when ``after_headers``

    @property
    def retriable(self) -> bool:
        """Whether a Go target would retry the request (§5.4)."""
        return self.kind in RETRIABLE_KINDS and not self.after_headers


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _find(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


class Response:
    """A complete HTTP response."""

    __slots__ = ("body", "framing", "headers", "reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes,
        version: str,
        framing: str,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version
        self.framing = framing  # "length", "chunked", "close" (read to EOF) or "none"

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes ({self.framing})>"

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive), or ``None``."""
        return _find(self.headers, name)


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset_transport(transport: asyncio.BaseTransport) -> None:
    """Drop a connection with a TCP RST (``SO_LINGER`` 0, then close)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


def _addr(value: object) -> str:
    if isinstance(value, tuple) and len(value) >= 2:
        return f"{value[0]}:{value[1]}"
    return "?"


# --- client ---------------------------------------------------------------------------------


class _Stale(Exception):
    """A pooled connection turned out to be closed before anything was written."""


class _ClientConnection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, client: HTTPClient, key: tuple[str, int]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.local = "?"
        self.remote = "?"
        self._waiter: asyncio.Future[Response] | None = None
        self._head_request = False
        self._got_bytes = False
        self._headers_done = False
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._framing = "length"
        self._version = ""
        self._keep_alive = True
        self._write_ready: asyncio.Future[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        _set_nodelay(transport)
        self.local = _addr(transport.get_extra_info("sockname"))
        self.remote = _addr(transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection is unusable.
            self._drop()
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(TransportError(MALFORMED, "unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(
                TransportError(
                    MALFORMED,
                    "net/http: HTTP/1.x transport connection broken: malformed HTTP response "
                    f"({exc})",
                    after_headers=self._headers_done,
                    status=self._status if self._headers_done else 0,
                )
            )

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        ready = self._write_ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if exc is None and self._headers_done and self._framing == "close":
            self._complete()
            return
        self._fail(self._lost_error(exc))

    def pause_writing(self) -> None:
        if self._write_ready is None or self._write_ready.done():
            self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        ready = self._write_ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._headers_done = True
        if self._head_request or self._status in (204, 304) or self._status < 200:
            self._framing = "none"
        elif (_find(self._headers, "transfer-encoding") or "").lower().endswith("chunked"):
            self._framing = "chunked"
        elif _find(self._headers, "content-length") is not None:
            self._framing = "length"
        else:
            self._framing = "close"
        if self._head_request and self._status >= 200:
            # llhttp would wait for a body that HEAD responses never carry.
            self._keep_alive = self.parser.should_keep_alive()
            self._version = self.parser.get_http_version()
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if self._status < 200:  # informational: the real response follows
            self._reset_response()
            return
        self._keep_alive = self.parser.should_keep_alive()
        self._version = self.parser.get_http_version()
        self._complete()

    # request cycle
    def _reset_response(self) -> None:
        self._got_bytes = False
        self._headers_done = False
        self._status = 0
        self._reason = b""
        self._headers = []
        self._chunks = []
        self._framing = "length"
        self._version = ""

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._version:
            self._version = self.parser.get_http_version()
        response = Response(
            self._status,
            self._reason.decode("latin-1"),
            self._headers,
            b"".join(self._chunks),
            self._version,
            self._framing,
        )
        waiter.set_result(response)

    def _fail(self, error: TransportError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._drop()

    def _drop(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.abort()
        self.closed = True
        self.client._forget(self)

    def _lost_error(self, exc: BaseException | None) -> TransportError:
        after = self._headers_done
        status = self._status if after else 0
        pair = f"{self.local}->{self.remote}"
        if isinstance(exc, ConnectionResetError):
            return TransportError(
                READ if after else RESET,
                f"read tcp {pair}: read: connection reset by peer",
                after_headers=after,
                status=status,
            )
        if isinstance(exc, BrokenPipeError):
            return TransportError(
                READ if after else BROKEN_PIPE,
                f"write tcp {pair}: write: broken pipe",
                after_headers=after,
                status=status,
            )
        if isinstance(exc, ConnectionAbortedError):
            return TransportError(
                READ if after else ABORTED,
                f"read tcp {pair}: read: software caused connection abort",
                after_headers=after,
                status=status,
            )
        if after:
            return TransportError(READ, "unexpected EOF", after_headers=True, status=status)
        if exc is None:
            return TransportError(EOF, "EOF")
        return TransportError(EOF, f"EOF ({exc})")

    async def exchange(self, head: bytes, body: Body, head_request: bool) -> Response:
        """Send one request and wait for its complete response."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Stale
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._reset_response()
        self._keep_alive = True
        self._head_request = head_request
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        transport = self.transport
        if body is None or isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body or b"")
            if len(data) <= _SMALL_BODY:
                transport.write(head + data if data else head)
            else:
                transport.write(head)
                view = memoryview(data)
                for offset in range(0, len(data), _WRITE_CHUNK):
                    if self.closed:
                        break
                    transport.write(view[offset : offset + _WRITE_CHUNK])
                    await self._drain()
        else:
            transport.write(head)
            await self._write_chunked(body)
        return await waiter

    async def _drain(self) -> None:
        ready = self._write_ready
        if ready is not None and not ready.done():
            await ready

    async def _write_chunked(self, body: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        assert self.transport is not None
        if isinstance(body, AsyncIterable):
            async for chunk in body:
                if self.closed:
                    return
                if chunk:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await self._drain()
        else:
            for chunk in body:
                if self.closed:
                    return
                if chunk:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await self._drain()
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")

    def release(self) -> bool:
        """Back to idle after a complete exchange; ``False`` if it cannot be reused."""
        self._waiter = None
        if self.closed or not self._keep_alive or self._framing == "close":
            self._drop()
            return False
        connection = (_find(self._headers, "connection") or "").lower()
        if connection == "close":
            self._drop()
            return False
        self.reused = True
        timeout = self.client.idle_timeout
        if timeout > 0:
            self._idle_handle = asyncio.get_running_loop().call_later(timeout, self._drop)
        return True


class HTTPClient:
    """Keep-alive HTTP/1.1 client; request heads are sent exactly as given.

    ``idle_timeout`` drops idle connections (a Go target: 6 s); ``max_idle_per_host`` bounds
    the idle pool (Go: 32). Every call is bounded by its ``timeout`` (connect, send and the
    whole response).
    """

    def __init__(
        self,
        *,
        max_idle_per_host: int = 32,
        idle_timeout: float = 6.0,
        connect_timeout: float | None = None,
    ) -> None:
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout  # bounds each connect (None: only ``timeout``)
        self._idle: dict[tuple[str, int], deque[_ClientConnection]] = {}
        self._all: set[_ClientConnection] = set()
        self._closed = False

    def _forget(self, conn: _ClientConnection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.key)
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(conn)

    async def _connect(self, host: str, port: int) -> _ClientConnection:
        loop = asyncio.get_running_loop()
        key = (host, port)
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _ClientConnection(self, key), host, port),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise TransportError(TIMEOUT, f"dial tcp {host}:{port}: i/o timeout") from None
        except ConnectionRefusedError:
            raise TransportError(
                REFUSED, f"dial tcp {host}:{port}: connect: connection refused"
            ) from None
        except OSError as exc:
            raise TransportError(EOF, f"dial tcp {host}:{port}: {exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    def _take_idle(self, key: tuple[str, int]) -> _ClientConnection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def _put_idle(self, conn: _ClientConnection) -> None:
        if self._closed or not conn.release():
            return
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= self.max_idle_per_host:
            idle.popleft()._drop()
        idle.append(conn)

    async def send(
        self,
        host: str,
        port: int,
        head: bytes,
        body: Body = None,
        *,
        method: str = "GET",
        timeout: float | None = None,
    ) -> Response:
        """Send a complete request head (and body) to ``host:port``; return the response.

        A body that is not ``bytes`` is sent with chunked encoding (the head must say so).
        Raises :class:`TransportError` on any failure below HTTP, including the timeout.
        """
        if self._closed:
            raise RuntimeError("HTTPClient is closed")
        if timeout is None:
            return await self._send(host, port, head, body, method)
        holder: list[_ClientConnection] = []
        try:
            return await asyncio.wait_for(
                self._send(host, port, head, body, method, holder), timeout
            )
        except asyncio.TimeoutError:
            conn = holder[-1] if holder else None
            after = bool(conn and conn._headers_done)
            if conn is not None:
                conn._drop()
            what = (
                "(Client.Timeout or context cancellation while reading body)"
                if after
                else "(Client.Timeout exceeded while awaiting headers)"
            )
            raise TransportError(
                TIMEOUT,
                f"context deadline exceeded {what}",
                after_headers=after,
                status=conn._status if conn is not None and after else 0,
            ) from None

    async def _send(
        self,
        host: str,
        port: int,
        head: bytes,
        body: Body,
        method: str,
        holder: list[_ClientConnection] | None = None,
    ) -> Response:
        key = (host, port)
        replayable = method in ("GET", "HEAD") and (body is None or isinstance(body, bytes))
        # Bounded: only pooled connections are retried, and the pool is bounded.
        for _ in range(self.max_idle_per_host + 2):
            conn = self._take_idle(key)
            fresh = conn is None
            if conn is None:
                conn = await self._connect(host, port)
            if holder is not None:
                holder.append(conn)
            try:
                response = await conn.exchange(head, body, method == "HEAD")
            except _Stale:
                if fresh:
                    raise TransportError(EOF, "EOF") from None
                continue
            except TransportError as exc:
                # Go replays an idempotent request that failed on a reused connection
                # before any response byte arrived (the server had closed it).
                if not fresh and replayable and not conn._got_bytes and exc.kind != TIMEOUT:
                    continue
                raise
            except BaseException:
                conn._drop()
                raise
            self._put_idle(conn)
            return response
        raise TransportError(EOF, "EOF")

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] | dict[str, str] = (),
        body: Body = None,
        timeout: float | None = None,
    ) -> Response:
        """Convenience request: builds a standard head for ``url`` and sends it."""
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        names = {name.lower() for name, _ in pairs}
        if body is None or isinstance(body, (bytes, bytearray, memoryview)):
            if (body is not None or method in ("PUT", "POST")) and "content-length" not in names:
                lines.append(f"Content-Length: {len(body or b'')}")
        elif "transfer-encoding" not in names:
            lines.append("Transfer-Encoding: chunked")
        lines.extend(f"{name}: {value}" for name, value in pairs)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        return await self.send(host, port, head, body, method=method, timeout=timeout)

    async def close(self) -> None:
        """Close every connection."""
        self._closed = True
        for conn in list(self._all):
            conn._drop()
        self._all.clear()
        self._idle.clear()


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
        return _find(self.headers, name)


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
        _set_nodelay(transport)
        self.peer = _addr(transport.get_extra_info("peername"))
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
        expect = _find(self._headers, "expect")
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
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
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
    if len(reply.body) > _SMALL_BODY:
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
