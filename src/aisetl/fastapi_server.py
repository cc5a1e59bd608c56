"""Adapter: FastAPI / ASGI, served by uvicorn, with the WebSocket transport.

``.app`` is a real :class:`fastapi.FastAPI`: users may add routes and middleware. Requests
that no user route claims go to a raw ASGI handler (the protocol's catch-all). When the app
has no user routes or middleware, that handler is called directly, skipping FastAPI's routing.
Synchronous transforms run on a thread pool, never on the event loop, so ``/health`` and the
other requests of the worker stay responsive while a transform computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import uvicorn
from fastapi import FastAPI

from aisetl._uvicorn_http import ETLHttpToolsProtocol
from aisetl._uvicorn_ws import EXTENSION as FRAMES_EXTENSION
from aisetl._uvicorn_ws import MORE as FRAMES_MORE
from aisetl._uvicorn_ws import FrameWebSocketProtocol
from aisetl.aio import LoopIO
from aisetl.config import WS_ERRORS_CLOSE
from aisetl.flow import Flow, ObjectRequest, WsMessage
from aisetl.handoff import Handoff
from aisetl.protocol import DEFAULT_PORT, HEALTH_BODY, WS_PATH, is_health_check, names_an_object
from aisetl.reply import TEXT_PLAIN, Reply, health_reply
from aisetl.server import ETLServer
from aisetl.sources import (
    BodyDoesNotFit,
    BodyTooLarge,
    ClientGone,
    Failure,
    check_fits_in_memory,
)
from aisetl.workers import bind_socket, run_workers

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Size of the parts a streamed ws reply is sent in (a 1 GiB object: 1024 frames).
WS_PART = 1024 * 1024
#: A control message is a few hundred bytes; a larger message is certainly a payload.
_CONTROL_MAX = 64 * 1024
WS_MAX_MESSAGE = 16 * 1024**3  # the target reads messages up to 16 GiB
_OBJECT_METHODS = ("GET", "PUT")
_HEALTH_HEADERS = [(b"content-type", TEXT_PLAIN.encode()), (b"content-length", b"7")]


class FastAPIServer(ETLServer):
    """ETL server on FastAPI (ASGI), served by uvicorn; speaks hpush, hpull and WebSocket."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.app: FastAPI = ETLApp(self)

    def uvicorn_config(self) -> uvicorn.Config:
        """uvicorn settings for the target's traffic (keep-alive, 16 GiB ws messages, no pings)."""
        s = self.settings
        return uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            ws_max_size=WS_MAX_MESSAGE,
            ws_ping_interval=None,
            ws_ping_timeout=None,
            ws_per_message_deflate=False,
            ws=(FrameWebSocketProtocol if s.ws_frames else None) or "auto",
            http=ETLHttpToolsProtocol,
            timeout_keep_alive=int(s.keepalive_timeout),
            timeout_graceful_shutdown=int(s.grace_period) or None,
            backlog=2048,
            access_log=False,
            server_header=False,
            log_level="info",
        )

    def start(self, workers: int | None = None) -> None:
        """Serve until SIGTERM; ``workers`` processes (default ``NUM_WORKERS`` or 1)."""
        sock = bind_socket(self.host, self.port)
        count = workers or self.settings.num_workers or 1
        self.logger.info("FastAPI server on %s:%d, %d worker(s)", self.host, self.port, count)
        run_workers(sock, count, self.serve_socket, self.settings.grace_period, self.logger)

    def serve_socket(self, sock: Any) -> None:
        """Serve an already listening socket with uvicorn in this process."""
        _GracefulServer(self.uvicorn_config()).run(sockets=[sock])
        runtime = self.app.etl_handler.current_runtime  # type: ignore[attr-defined]
        if runtime is not None and runtime.threads.busy:
            # The grace period is over: do not wait for transforms still running.
            self.logger.warning(
                "%d transform(s) still running after the grace period; exiting anyway",
                runtime.threads.busy,
            )
            logging.shutdown()
            os._exit(0)


class _GracefulServer(uvicorn.Server):
    """uvicorn, except that a graceful stop on SIGTERM ends with exit status 0.

    (uvicorn re-raises the signal once it has stopped, so the process would die of it.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class ETLApp(FastAPI):
    """A FastAPI app whose catch-all is the ETL protocol handler."""

    def __init__(self, etl: FastAPIServer) -> None:
        super().__init__(docs_url=None, redoc_url=None, openapi_url=None, title=type(etl).__name__)
        self.etl_handler = ProtocolHandler(etl)
        self.router.default = self.etl_handler
        self._own_routes = len(self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "lifespan"
            and not self.user_middleware
            and len(self.router.routes) == self._own_routes
        ):
            await self.etl_handler(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@dataclass
class _Runtime:
    """Per-event-loop state: the loop, the transform thread pool and the flow."""

    loop: asyncio.AbstractEventLoop
    threads: Handoff
    flow: Flow
    pid: int
    io: LoopIO


class ProtocolHandler:
    """Raw ASGI handler of ``/health``, object GET/PUT and ``/ws``."""

    def __init__(self, etl: FastAPIServer) -> None:
        self._etl = etl
        self._runtime: _Runtime | None = None

    @property
    def current_runtime(self) -> _Runtime | None:
        """The runtime of this process, if a request created one."""
        runtime = self._runtime
        return runtime if runtime is not None and runtime.pid == os.getpid() else None

    def runtime(self) -> _Runtime:
        """This loop's runtime (created on first use, after any fork)."""
        loop = asyncio.get_running_loop()
        runtime = self._runtime
        if runtime is None or runtime.loop is not loop or runtime.pid != os.getpid():
            threads = Handoff(loop, self._etl.settings.threads)

            def run_async(awaitable: Awaitable[Any]) -> Any:
                return asyncio.run_coroutine_threadsafe(awaitable, loop).result()  # type: ignore[arg-type]

            flow = Flow(self._etl, run_async=run_async)
            io = LoopIO(self._etl.settings, threads.run)
            runtime = _Runtime(loop, threads, flow, os.getpid(), io)
            self._runtime = runtime
        return runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    # --- HTTP --------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw_path_bytes = scope.get("raw_path")
        raw_path = (
            raw_path_bytes.decode("utf-8", "surrogateescape") if raw_path_bytes else scope["path"]
        )
        if is_health_check(method, raw_path):
            if method == "GET":  # the kubelet's probe: answered on the loop, nothing to allocate
                await send(
                    {"type": "http.response.start", "status": 200, "headers": _HEALTH_HEADERS}
                )
                await send({"type": "http.response.body", "body": HEALTH_BODY})
            else:
                await _send_reply(send, health_reply(), head_only=True)
            return
        node_url = None
        length = None
        for name, value in scope["headers"]:
            if name == b"ais-node-url":
                node_url = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        query = scope["query_string"].decode("latin-1")
        request = ObjectRequest.from_http(method, raw_path, query, node_url)
        runtime = self.runtime()
        flow = runtime.flow
        if method not in _OBJECT_METHODS:
            await _send_reply(send, flow.method_not_allowed(request.path, method))
            return
        body: bytes | io.BufferedReader | None = None
        if method == "PUT":
            limit = self._etl.settings.max_body_size
            try:
                if limit and length is not None and int(length) > limit:
                    raise BodyTooLarge(limit)
                if flow.wants_body_stream(request):
                    raw = ReceiveReader(receive, runtime.loop, limit)
                    body = io.BufferedReader(raw, 256 * 1024)
                else:
                    body = await _read_body(receive, limit, _length(length))
            except Failure as failure:
                await _send_reply(send, flow.failure_reply(request.path, failure))
                return
            except ClientGone as exc:
                self._etl.logger.info("client went away: %s", exc)
                return
        try:
            reply = await flow.handle_async(request, body, runtime.io)
            if reply is None:
                reply = await runtime.threads.run(flow.handle, request, body)
        except ClientGone as exc:
            self._etl.logger.info("client went away: %s", exc)
            return
        await _send_reply(send, reply, runtime)

    # --- WebSocket ---------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != WS_PATH:
            await send({"type": "websocket.close", "code": 1008})
            return
        frames = FRAMES_EXTENSION in (scope.get("extensions") or {})
        if frames:  # our uvicorn protocol: binary messages may come and go in parts
            await send({"type": "websocket.accept", FRAMES_EXTENSION: True})
        else:
            await send({"type": "websocket.accept"})
        runtime = self.runtime()
        session = WebSocketSession(self._etl, runtime, receive, send, frames=frames)
        await session.run()


@dataclass
class _Streamed:
    """A task's reply whose content is sent as it is produced, in parts of one message."""

    reply: Reply
    path: str


TaskReply = WsMessage | _Streamed


class WebSocketSession:
    """One target connection: tasks are processed concurrently, answered in arrival order.

    With ``frames`` (our uvicorn protocol, see :mod:`aisetl._uvicorn_ws`) a streaming
    transform reads its payload message part by part as it arrives and its output goes out
    part by part too, so memory stays flat whatever the object's size; such a task is the
    last one read until its answer is sent.
    """

    def __init__(
        self,
        etl: FastAPIServer,
        runtime: _Runtime,
        receive: Receive,
        send: Send,
        frames: bool = False,
    ) -> None:
        self._etl = etl
        self._runtime = runtime
        self._receive = receive
        self._send = send
        self._frames = frames
        self._replies: asyncio.Queue[asyncio.Future[TaskReply] | None] = asyncio.Queue(
            maxsize=etl.settings.ws_inflight
        )
        self._close_on_error = etl.settings.ws_errors == WS_ERRORS_CLOSE
        # the task whose payload is being streamed: its reader, "answered", its future
        self._streaming: tuple[FrameReader, asyncio.Event, asyncio.Future[TaskReply]] | None = None
        self._after_invalid_control = False

    async def run(self) -> None:
        """Read tasks until the target drops the connection."""
        writer = asyncio.ensure_future(self._write_replies())
        try:
            while not writer.done():
                task = await self._next_task()
                if task is None:
                    break
                await self._replies.put(task)
                if self._streaming is not None and not await self._finish_streamed_payload(writer):
                    break
        finally:
            if writer.done():
                pass
            else:
                await self._replies.put(None)
                await writer

    async def _finish_streamed_payload(self, writer: asyncio.Future[None]) -> bool:
        """Wait until the streamed task was answered; drop what its transform left unread."""
        assert self._streaming is not None
        reader, answered, _ = self._streaming
        waiter: asyncio.Future[Any] = asyncio.ensure_future(answered.wait())
        await asyncio.wait((waiter, writer), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        self._streaming = None
        if writer.done():
            return False
        while reader.more:
            message = await self._receive()
            if message["type"] != "websocket.receive":
                return False
            reader.more = bool(message.get(FRAMES_MORE))
        return True

    async def _whole_message(self) -> bytes | str | None:
        """The next message, its parts joined; ``None`` when the connection ended."""
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return None
        if not message.get(FRAMES_MORE):
            return _ws_data(message)
        parts = [message.get("bytes") or b""]
        while True:
            message = await self._receive()
            if message["type"] != "websocket.receive":
                return None
            parts.append(message.get("bytes") or b"")
            if not message.get(FRAMES_MORE):
                return b"".join(parts)

    async def _control_after_invalid_one(self) -> bytes | str | None:
        """The control message that follows one we could not parse.

        Whether that task's payload comes next is unknowable (it does unless the task had an
        FQN): the next message is taken as a control message when it names an object, else as
        that payload, which is dropped, so that every later task still gets its own answer.
        """
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return None
        first = _ws_data(message)
        size, parts = len(first), [first]
        while message.get(FRAMES_MORE):
            message = await self._receive()
            if message["type"] != "websocket.receive":
                return None
            part = message.get("bytes") or b""
            size += len(part)
            if size <= _CONTROL_MAX:
                parts.append(part)
        if size <= _CONTROL_MAX:
            data = first if len(parts) == 1 else b"".join(p for p in parts if isinstance(p, bytes))
            if names_an_object(data):
                return data
        self._etl.logger.warning(
            "dropped a %d-byte ws message: the payload of the task with the invalid control "
            "message",
            size,
        )
        return await self._whole_message()

    async def _next_task(self) -> asyncio.Future[TaskReply] | None:
        if self._after_invalid_control:
            self._after_invalid_control = False
            data = await self._control_after_invalid_one()
        else:
            data = await self._whole_message()
        if data is None:
            return None
        flow = self._runtime.flow
        loop = self._runtime.loop
        try:
            request = flow.parse_ws(data)
        except Failure as failure:
            self._after_invalid_control = True
            done: asyncio.Future[TaskReply] = loop.create_future()
            done.set_result(flow.ws_message(flow.failure_reply("(unknown)", failure), "(unknown)"))
            return done
        payload: bytes | None = None
        if not request.fqn:
            if self._frames and flow.wants_body_stream(request):
                return await self._stream_task(request)
            data = await self._whole_message()
            if data is None:
                return None
            payload = data if isinstance(data, bytes) else data.encode("utf-8")
        if flow.can_run_inline(request, payload):
            reply = flow.handle_inline(request, payload)
            if reply is not None:
                done = loop.create_future()
                done.set_result(flow.ws_message(reply, request.path))
                return done
        return asyncio.ensure_future(self._task_async(request, payload))

    async def _stream_task(self, request: ObjectRequest) -> asyncio.Future[TaskReply] | None:
        """A streaming transform fed by the payload's parts as they arrive."""
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return None
        first = message.get("bytes")
        if first is None:
            first = (message.get("text") or "").encode("utf-8")
        runtime = self._runtime
        reader = FrameReader(first, bool(message.get(FRAMES_MORE)), self._receive, runtime.loop)
        body = io.BufferedReader(reader, 256 * 1024)
        future = runtime.threads.run(self._task, request, body)
        self._streaming = (reader, asyncio.Event(), future)
        return future

    async def _task_async(self, request: ObjectRequest, payload: bytes | None) -> TaskReply:
        runtime = self._runtime
        reply = await runtime.flow.handle_async(request, payload, runtime.io)
        if reply is None:
            return await runtime.threads.run(self._task, request, payload)
        return runtime.flow.ws_message(reply, request.path)

    def _task(self, request: ObjectRequest, payload: bytes | BinaryIO | None) -> TaskReply:
        flow = self._runtime.flow
        reply = flow.handle(request, payload)
        if self._frames and reply.stream is not None and reply.status < 300:
            return _Streamed(reply, request.path)
        return flow.ws_message(reply, request.path)

    async def _write_replies(self) -> None:
        while True:
            future = await self._replies.get()
            if future is None:
                return
            try:
                reply = await future
            except Exception as exc:
                self._etl.logger.exception("ws task failed unexpectedly")
                reply = WsMessage(f"Internal error: {type(exc).__name__}: {exc}", failed=True)
            if isinstance(reply, _Streamed):
                going_on = await self._send_streamed(reply)
            else:
                going_on = await self._send_message(reply)
            streaming = self._streaming
            if streaming is not None and future is streaming[2]:
                streaming[1].set()
            if not going_on:
                return

    async def _send_message(self, reply: WsMessage) -> bool:
        if reply.failed and self._close_on_error:
            await self._send({"type": "websocket.close", "code": 1011})
            return False
        if isinstance(reply.data, bytes):
            await self._send({"type": "websocket.send", "bytes": reply.data})
        else:
            await self._send({"type": "websocket.send", "text": reply.data})
        return True

    async def _send_streamed(self, streamed: _Streamed) -> bool:
        """Send a streamed reply in parts of one binary message; ``False``: connection closed."""
        runtime = self._runtime
        stream = streamed.reply.stream
        assert stream is not None
        started = False
        part = bytearray()
        try:
            while True:
                chunk = await runtime.threads.run(next, stream, None)
                if chunk is None:
                    break
                part += chunk
                if len(part) >= WS_PART:  # few, large frames: clients cap a message's frames
                    await self._send({"type": "websocket.send", "bytes": part, FRAMES_MORE: True})
                    part = bytearray()
                    started = True
        except Failure as failure:
            flow = runtime.flow
            if not started:
                return await self._send_message(
                    flow.ws_message(flow.failure_reply(streamed.path, failure), streamed.path)
                )
            # Part of the message is out: only a broken connection tells the target.
            self._etl.logger.error("aborting ws reply mid-stream: %s", failure.message)
            await self._send({"type": "websocket.close", "code": 1011})
            return False
        except ClientGone as exc:
            self._etl.logger.info("client went away: %s", exc)
            return False
        finally:
            streamed.reply.close()
        await self._send({"type": "websocket.send", "bytes": bytes(part), FRAMES_MORE: False})
        return True


def _ws_data(message: Message) -> bytes | str:
    data = message.get("bytes")
    if data is not None:
        return data  # type: ignore[no-any-return]
    return message.get("text") or ""


# --- ASGI body helpers -----------------------------------------------------------------------


def _length(header: bytes | None) -> int | None:
    """The Content-Length value, when there is a valid one."""
    if header is None or not header.isdigit():
        return None
    return int(header)


async def _read_body(receive: Receive, limit: int, length: int | None = None) -> bytes:
    """The whole request body, copied once into one buffer.

    With a ``Content-Length`` the buffer has its final size from the start (no regrowth, and
    ``getvalue`` hands it over without a copy); otherwise it grows as chunks come.
    """
    if length is not None:
        check_fits_in_memory(length)
    first = b""
    buffer: io.BytesIO | None = None
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
                buffer.write(chunk)
            elif first:
                sized = length is not None and length >= size
                buffer = _sized_buffer(length or 0) if sized else io.BytesIO()
                buffer.write(first)
                buffer.write(chunk)
            else:
                first = chunk
        if not message.get("more_body", False):
            break
    if buffer is None:
        return first
    if buffer.seek(0, io.SEEK_END) != size:  # fewer bytes than announced
        buffer.truncate(size)
    return buffer.getvalue()


def _sized_buffer(length: int) -> io.BytesIO:
    try:
        return io.BytesIO(bytes(length))
    except (MemoryError, OverflowError):
        raise BodyDoesNotFit(length) from None


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


class FrameReader(io.RawIOBase):
    """The parts of one ws payload message, read by a transform on a worker thread."""

    def __init__(
        self, first: bytes, more: bool, receive: Receive, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._pending = memoryview(first)
        self.more = more  # parts still to come
        self._receive = receive
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if not self.more:
                return 0
            message = asyncio.run_coroutine_threadsafe(_next(self._receive), self._loop).result()
            if message["type"] != "websocket.receive":
                raise ClientGone("the connection closed before the whole payload arrived")
            self._pending = memoryview(message.get("bytes") or b"")
            self.more = bool(message.get(FRAMES_MORE))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _StreamAborted(Exception):
    """Raised to make the ASGI server drop a connection whose reply cannot be completed."""


async def _send_reply(
    send: Send, reply: Reply, runtime: _Runtime | None = None, head_only: bool = False
) -> None:
    """Send a reply; a stream is pulled chunk by chunk on the transform threads."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in reply.headers.items()
    ]
    if reply.stream is None:
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else reply.body})
        return
    assert runtime is not None, "a streamed reply needs the transform threads"
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    stream = reply.stream
    try:
        while True:
            chunk = await runtime.threads.run(next, stream, None)
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Failure as failure:
        # The status line is gone: break the framing so the target sees a read error.
        raise _StreamAborted(f"reply aborted mid-stream: {failure.message}") from None
    finally:
        reply.close()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
