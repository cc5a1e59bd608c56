"""A small, fast asyncio HTTP/1.1 client on ``httptools``.

It sends request heads byte-for-byte as given (so an emulated target can reproduce a real
one's defects), keeps connections alive per host, and reports transport failures with the
classification a Go target retries on (:class:`TransportError`). The emulated target drives
servers with it; the FastAPI server uses it for hpull GETs and direct puts on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import AsyncIterable, Iterable, Sequence
from http import HTTPStatus
from typing import cast
from urllib.parse import urlsplit

import httptools

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

#: How a lost connection is reported: its kind before the response head, and Go's wording.
_LOST_CONNECTION: dict[type[BaseException], tuple[str, str]] = {
    ConnectionResetError: (RESET, "read tcp {pair}: read: connection reset by peer"),
    BrokenPipeError: (BROKEN_PIPE, "write tcp {pair}: write: broken pipe"),
    ConnectionAbortedError: (ABORTED, "read tcp {pair}: read: software caused connection abort"),
}

WRITE_CHUNK = 256 * 1024
SMALL_BODY = 64 * 1024


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


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def find_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
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
        return find_header(self.headers, name)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
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


def peer_address(value: object) -> str:
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
        set_nodelay(transport)
        self.local = peer_address(transport.get_extra_info("sockname"))
        self.remote = peer_address(transport.get_extra_info("peername"))

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
        elif (find_header(self._headers, "transfer-encoding") or "").lower().endswith("chunked"):
            self._framing = "chunked"
        elif find_header(self._headers, "content-length") is not None:
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
        for error_type, (kind, message) in _LOST_CONNECTION.items():
            if isinstance(exc, error_type):
                return TransportError(
                    READ if after else kind,
                    message.format(pair=pair),
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
            if len(data) <= SMALL_BODY:
                transport.write(head + data if data else head)
            else:
                transport.write(head)
                view = memoryview(data)
                for offset in range(0, len(data), WRITE_CHUNK):
                    if self.closed:
                        break
                    transport.write(view[offset : offset + WRITE_CHUNK])
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
        connection = (find_header(self._headers, "connection") or "").lower()
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
