"""Adapter: FastAPI / ASGI, served by uvicorn, with the WebSocket transport.

``.app`` is a real :class:`fastapi.FastAPI`: users may add routes and middleware. Requests
that no user route claims go to a raw ASGI handler (the protocol's catch-all); when the app
has no user routes or middleware, that handler is called directly, skipping FastAPI's routing.
The handler only translates: the request head goes to :meth:`Flow.admit`, the body is read as
it says (:mod:`aisetl.asgi_io`), the object is handled on the loop or the thread pool, and a
WebSocket connection is pumped by :mod:`aisetl.ws_session`. With no user routes or middleware,
a request that arrived whole in one read is first offered to :meth:`ProtocolHandler.serve_now`
from the protocol's read (:mod:`aisetl._uvicorn_http`), before uvicorn parses it: what needs
no wait is answered there, without a scope, a cycle or a task; the rest continues as an ASGI
app from where it stopped.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from fastapi import FastAPI

from aisetl import drain
from aisetl._uvicorn_http import ASGIApp
from aisetl._uvicorn_run import GracefulServer, etl_uvicorn_config, raise_loading_keep_alive
from aisetl._uvicorn_ws import EXTENSION as FRAMES_EXTENSION
from aisetl._uvicorn_ws import TAKE as WS_TAKE
from aisetl.aio import LoopIO
from aisetl.asgi_io import Receive, ReceiveReader, Send, read_body, send_reply
from aisetl.edge import (
    Admitted,
    Body,
    Headers,
    ObjectRequest,
    Refused,
    RequestHead,
    content_length,
    is_metrics_request,
)
from aisetl.flow import Flow
from aisetl.handoff import Handoff
from aisetl.metrics import metrics_reply
from aisetl.protocol import DEFAULT_PORT, HEALTH_BODY, WS_PATH, is_health_check
from aisetl.reply import TEXT_PLAIN, Reply, health_reply
from aisetl.server import ETLServer
from aisetl.sources import ClientGone, Failure
from aisetl.watch import Watch
from aisetl.workers import bind_socket, run_workers
from aisetl.ws_protocol import CLOSE_POLICY
from aisetl.ws_session import WebSocketSession

Scope = MutableMapping[str, Any]
_HEALTH_HEADERS = [(b"content-type", TEXT_PLAIN.encode()), (b"content-length", b"7")]


class FastAPIServer(ETLServer):
    """ETL server on FastAPI (ASGI), served by uvicorn; speaks hpush, hpull and WebSocket."""

    comm_types: ClassVar[tuple[str, ...]] = ("hpush", "hpull", "ws")

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.app: FastAPI = ETLApp(self)

    def uvicorn_config(self) -> uvicorn.Config:
        """uvicorn settings for the target's traffic (keep-alive, 16 GiB ws messages, no pings)."""
        return etl_uvicorn_config(self.app, self.host, self.port, self.settings)

    def start(self, workers: int | None = None) -> None:
        """Serve until SIGTERM; ``workers`` processes (default ``NUM_WORKERS`` or 1)."""
        sock = bind_socket(self.host, self.port)
        count = workers or self.settings.num_workers or 1
        self.logger.info("FastAPI server on %s:%d, %d worker(s)", self.host, self.port, count)
        run_workers(sock, count, self.serve_socket, self.settings.grace_period, self.logger)

    def serve_socket(self, sock: Any) -> None:
        """Serve an already listening socket with uvicorn in this process."""
        GracefulServer(self.uvicorn_config()).run(sockets=[sock])
        runtime = self.app.etl_handler.current_runtime  # type: ignore[attr-defined]
        if runtime is not None and runtime.threads.busy:
            # The grace period is over: do not wait for transforms still running.
            self.logger.warning(
                "%d transform(s) still running after the grace period; exiting anyway",
                runtime.threads.busy,
            )
            logging.shutdown()
            os._exit(0)


class ETLApp(FastAPI):
    """A FastAPI app whose catch-all is the ETL protocol handler."""

    def __init__(self, etl: FastAPIServer) -> None:
        super().__init__(docs_url=None, redoc_url=None, openapi_url=None, title=type(etl).__name__)
        self.etl_handler = ProtocolHandler(etl)
        self.router.default = self.etl_handler
        self._own_routes = len(self.router.routes)
        # Started by a plain `uvicorn module:app` (the reference's command line)?
        raise_loading_keep_alive(etl.settings.keepalive_timeout, etl.logger)

    def _etl_only(self) -> bool:
        """Whether every request is the protocol handler's (no user routes or middleware)."""
        return not self.user_middleware and len(self.router.routes) == self._own_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and self._etl_only():
            await self.etl_handler(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def aisetl_serve_whole(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Reply | ASGIApp | None:
        """Answer a request that came whole in one read (see ``_uvicorn_http.ServesNow``)."""
        if not self._etl_only():
            return None
        raw_path, _, query = target.partition(b"?")
        return self.etl_handler.serve_now(method, _path_text(raw_path), query, headers, body)


@dataclass
class _Runtime:
    """Per-event-loop state: the loop, the transform thread pool and the flow."""

    loop: asyncio.AbstractEventLoop
    threads: Handoff
    flow: Flow
    pid: int
    io: LoopIO


class ProtocolHandler:
    """Raw ASGI handler of ``/health``, object GET/PUT, ``POST /download`` and ``/ws``."""

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
            io_ = LoopIO(self._etl.settings, threads.run)
            runtime = _Runtime(loop, threads, flow, os.getpid(), io_)
            self._runtime = runtime
        return runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw_path = _raw_path(scope)
        if is_health_check(method, raw_path):
            if method == "GET" and drain.reason() is None:
                # the kubelet's probe: answered on the loop, nothing to allocate
                start = {"type": "http.response.start", "status": 200, "headers": _HEALTH_HEADERS}
                await send(start)
                await send({"type": "http.response.body", "body": HEALTH_BODY})
            else:
                await send_reply(send, health_reply(), head_only=method == "HEAD")
            return
        if is_metrics_request(method, raw_path):
            await send_reply(send, metrics_reply(self._etl.settings), head_only=method == "HEAD")
            return
        head = _request_head(method, raw_path, scope["query_string"], scope["headers"])
        runtime = self.runtime()
        admitted = runtime.flow.admit(head)
        if isinstance(admitted, Refused):
            await send_reply(send, runtime.flow.refusal(admitted))
            return
        await self._serve(runtime, head, admitted, receive, send)

    def serve_now(
        self,
        method: str,
        raw_path: str,
        raw_query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Reply | ASGIApp | None:
        """The reply to a request whose body came whole, made without waiting (a quick
        transform of a pushed object, a probe, a refusal); or an ASGI app that does the part
        that waits; or ``None``: serve it as any request. (Called from the protocol's read.)"""
        if is_health_check(method, raw_path):
            return health_reply()
        if is_metrics_request(method, raw_path):
            return metrics_reply(self._etl.settings)
        head = _request_head(method, raw_path, raw_query, headers)
        runtime = self.runtime()
        flow = runtime.flow
        admitted = flow.admit(head)
        if isinstance(admitted, Refused):
            return flow.refusal(admitted)
        request = admitted.request
        limit = self._etl.settings.max_body_size
        if (
            admitted.body is not Body.BYTES
            or (limit and len(body) > limit)
            or not isinstance(request, ObjectRequest)
            or not flow.can_run_inline(request, body)
        ):
            return _Rest(self, runtime, head, admitted)
        watch = flow.watch_now(request, head.content_length)
        if watch is None:  # no room for it yet: wait for it, as any request
            return _Rest(self, runtime, head, admitted)
        try:
            reply = flow.handle_inline(request, body, watch)
            if reply is None:  # it must run on the pool after all
                return _OnPool(self, runtime, request, body, watch)
            watch.reply(reply)
        except BaseException as exc:
            watch.__exit__(type(exc), exc, exc.__traceback__)
            raise
        watch.finish()
        return reply

    async def _serve(
        self, runtime: _Runtime, head: RequestHead, admitted: Admitted, receive: Receive, send: Send
    ) -> None:
        """Read an admitted request's body as it says, handle the object and send the reply."""
        flow = runtime.flow
        request = admitted.request
        body: bytes | io.BufferedReader | None = None
        listener: asyncio.Future[Any] | None = None

        def gone() -> bool:  # the disconnect listener returned (it is cancelled once replying)
            return listener is not None and listener.done() and not listener.cancelled()

        with flow.watch(request, gone=gone) as watch:
            try:
                limit = self._etl.settings.max_body_size
                if admitted.body is Body.STREAM:
                    reader = ReceiveReader(receive, runtime.loop, limit)
                    body = io.BufferedReader(reader, 256 * 1024)
                elif admitted.body is Body.BYTES:
                    await watch.reserve_async(head.content_length)  # waits, unread
                    body = await read_body(receive, limit, head.content_length)
                if watch.bounds.active and admitted.body is not Body.STREAM:
                    listener = asyncio.ensure_future(_disconnected(receive))
                reply = await flow.handle_async(request, body, runtime.io, watch)
                if reply is None:
                    reply = await runtime.threads.run(flow.handle, request, body, watch)
            except Failure as failure:
                reply = flow.failure_reply(request.path, failure)
            except ClientGone as exc:
                flow.client_gone(exc)
                watch.gone()
                return
            finally:
                if listener is not None:
                    listener.cancel()
            await self._send(runtime, send, watch, reply)

    async def _send(self, runtime: _Runtime, send: Send, watch: Watch, reply: Reply) -> None:
        try:
            await send_reply(send, watch.reply(reply), runtime.threads)
        except ClientGone as exc:  # noticed by a streamed reply's transform
            runtime.flow.client_gone(exc)
            watch.gone()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != WS_PATH:
            await send({"type": "websocket.close", "code": CLOSE_POLICY})
            return
        frames = FRAMES_EXTENSION in (scope.get("extensions") or {})
        runtime = self.runtime()
        settings = self._etl.settings
        session = WebSocketSession(
            runtime.flow,
            runtime.threads,
            runtime.io,
            receive,
            send,
            logger=self._etl.logger,
            errors=settings.ws_errors,
            inflight=settings.ws_inflight,
            frames=frames,
        )
        if frames:  # our uvicorn protocol: binary messages may come and go in parts
            await send(
                {"type": "websocket.accept", FRAMES_EXTENSION: True, WS_TAKE: session.take_now}
            )
        else:
            await send({"type": "websocket.accept"})
        await session.run()


class _Rest:
    """An ASGI app that serves an admitted request the usual way (reads its body, ...)."""

    def __init__(
        self, handler: ProtocolHandler, runtime: _Runtime, head: RequestHead, admitted: Admitted
    ) -> None:
        self._args = (handler, runtime, head, admitted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler, runtime, head, admitted = self._args
        await handler._serve(runtime, head, admitted, receive, send)


class _OnPool:
    """An ASGI app that runs a watched object's transform on the pool, then replies."""

    def __init__(
        self,
        handler: ProtocolHandler,
        runtime: _Runtime,
        request: ObjectRequest,
        body: bytes,
        watch: Watch,
    ) -> None:
        self._args = (handler, runtime, request, body, watch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler, runtime, request, body, watch = self._args
        with watch:
            reply = await runtime.threads.run(runtime.flow.handle, request, body, watch)
            await handler._send(runtime, send, watch, reply)


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path: str = _path_text(raw) if raw else scope["path"]
    return path


def _path_text(raw_path: bytes) -> str:
    """A raw (still escaped) request path as text; bytes that are not UTF-8 survive."""
    return raw_path.decode("utf-8", "surrogateescape")


def _request_head(
    method: str, raw_path: str, raw_query: bytes, raw_headers: list[tuple[bytes, bytes]]
) -> RequestHead:
    headers = Headers.from_raw(raw_headers)
    return RequestHead(
        method,
        raw_path,
        raw_query.decode("latin-1"),
        headers,
        content_length(headers.get("content-length")),
        "chunked" in (headers.get("transfer-encoding") or "").lower(),
    )


async def _disconnected(receive: Receive) -> None:
    """Returns when the client disconnects (call only once the request body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
