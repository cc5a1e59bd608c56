"""Adapter: Flask / WSGI, served by gunicorn (threaded workers, keep-alive).

``.app`` is a real :class:`flask.Flask`: users may add routes. Requests that no user route
claims go to a raw WSGI handler that speaks the protocol through the neutral flow.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from flask import Flask
from werkzeug.exceptions import HTTPException

from aisetl._gunicorn import HEADER_TIMEOUT_OPTION, ConnectionGone
from aisetl._gunicorn_pod import POD_OPTIONS
from aisetl.config import Settings
from aisetl.deadline import peer_closed
from aisetl.edge import Body, Refused, RequestHead, content_length, is_metrics_request
from aisetl.flow import Flow, FlowPerProcess
from aisetl.http11 import reason
from aisetl.metrics import metrics_reply
from aisetl.protocol import DEFAULT_PORT, is_health_check
from aisetl.reply import Reply, health_reply
from aisetl.server import ETLServer
from aisetl.sources import ClientGone, Failure
from aisetl.watch import Watch
from aisetl.workers import bind_socket
from aisetl.wsgi_io import WSGIInputReader, raw_target, read_exactly, request_headers

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_READ_CHUNK = 256 * 1024


class FlaskServer(ETLServer):
    """ETL server on Flask (WSGI), served by gunicorn's threaded workers."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.app = Flask(type(self).__name__, static_folder=None)
        self.protocol_handler = WSGIProtocolHandler(self)
        self.app.wsgi_app = RouteOrProtocol(self.app, self.app.wsgi_app, self.protocol_handler)  # type: ignore[method-assign]

    def gunicorn_options(self, workers: int | None = None) -> dict[str, Any]:
        """gunicorn settings for the target's traffic (threads, keep-alive, long request lines)."""
        return gunicorn_options(self.settings, self.host, self.port, workers)

    def start(self, workers: int | None = None) -> None:
        """Serve with gunicorn until SIGTERM; ``workers`` processes (default: NUM_WORKERS or 1)."""
        from aisetl._gunicorn import run_gunicorn

        options = self.gunicorn_options(workers)
        bind_socket(self.host, self.port).close()  # a port in use: one clear error, no retries
        self.logger.info("Flask server on %s, %d worker(s)", options["bind"], options["workers"])
        run_gunicorn(self.app, options)


def gunicorn_options(
    s: Settings, host: str, port: int, workers: int | None = None
) -> dict[str, Any]:
    """gunicorn settings for the target's traffic (threads, keep-alive, long request lines)."""
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers or s.num_workers or 1,
        "worker_class": "aisetl._gunicorn.ETLThreadWorker",
        "threads": s.threads,
        "keepalive": int(s.keepalive_timeout),
        "graceful_timeout": int(s.grace_period),
        "timeout": 0,
        "backlog": 2048,
        "limit_request_line": 0,
        "limit_request_field_size": 0,
        "accesslog": None,
        "loglevel": "info",
        "control_socket_disable": True,
        # gunicorn stops accepting at 1000 connections per worker: a target keeps more
        "worker_connections": 16384,
        HEADER_TIMEOUT_OPTION: s.header_timeout,
        **POD_OPTIONS,
    }


class RouteOrProtocol:
    """WSGI dispatch: a user's Flask route if one matches, else the protocol handler."""

    def __init__(self, flask_app: Flask, flask_wsgi: WSGIApp, handler: WSGIApp) -> None:
        self._flask = flask_app
        self._flask_wsgi = flask_wsgi
        self._handler = handler

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._user_route_matches(environ):
            return self._flask_wsgi(environ, start_response)
        return self._handler(environ, start_response)

    def _user_route_matches(self, environ: Environ) -> bool:
        if not any(True for _ in self._flask.url_map.iter_rules()):
            return False
        try:
            self._flask.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return False
        return True


class WSGIProtocolHandler:
    """Raw WSGI handler of ``/health`` and object GET/PUT."""

    def __init__(self, etl: FlaskServer) -> None:
        self._etl = etl
        self._flow = FlowPerProcess(lambda: Flow(self._etl, loop_direct_puts=True))

    @property
    def flow(self) -> Flow:
        """This process's flow (created after any fork)."""
        return self._flow.get()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method: str = environ["REQUEST_METHOD"]
        raw_path, query = raw_target(environ)
        if is_health_check(method, raw_path):
            return _respond(start_response, health_reply())
        if is_metrics_request(method, raw_path):
            return _respond(start_response, metrics_reply(self._etl.settings))
        head = RequestHead(
            method,
            raw_path,
            query,
            request_headers(environ),
            content_length(environ.get("CONTENT_LENGTH")),
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower(),
        )
        flow = self.flow
        admitted = flow.admit(head)
        if isinstance(admitted, Refused):
            return _respond(start_response, flow.refusal(admitted))
        request = admitted.request
        sock = environ.get("gunicorn.socket")
        watch = flow.watch(request, gone=lambda: peer_closed(sock))
        try:
            payload: bytes | BinaryIO | None = None
            try:
                if admitted.body is not Body.NONE:
                    payload = self._body(environ, head, admitted.body is Body.STREAM, watch)
            except Failure as failure:
                reply = flow.failure_reply(request.path, failure)
            else:
                reply = flow.handle(request, payload, watch)
            return _Finishing(_respond(start_response, watch.reply(reply)), watch)
        except ClientGone as exc:
            flow.client_gone(exc)
            watch.gone()
            watch.finish()
            raise ConnectionGone(str(exc)) from None
        except BaseException:
            watch.finish()
            raise

    def _body(
        self, environ: Environ, head: RequestHead, as_stream: bool, watch: Watch
    ) -> bytes | BinaryIO:
        limit = self._etl.settings.max_body_size
        stream = environ["wsgi.input"]
        length = None if head.chunked else (head.content_length or 0)
        reader = WSGIInputReader(stream, length, limit)
        if as_stream:
            return io.BufferedReader(reader, _READ_CHUNK)
        watch.reserve(length)  # waits, unread, while memory is short
        if length is not None:
            return read_exactly(stream, length)
        return reader.readall()


def _respond(start_response: StartResponse, reply: Reply) -> Iterable[bytes]:
    headers = list(reply.headers.items())
    if reply.stream is None:
        headers.append(("Content-Length", str(len(reply.body))))
        start_response(f"{reply.status} {reason(reply.status)}", headers)
        return [reply.body]
    start_response(f"{reply.status} {reason(reply.status)}", headers)
    return _StreamBody(reply)


class _Finishing:
    """A WSGI response that ends its object's watch when the server is done with it."""

    def __init__(self, body: Iterable[bytes], watch: Watch) -> None:
        self._body = body
        self._watch = watch
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._body
        self._complete = True

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._complete:
                self._watch.cut_short()
            self._watch.finish()


class _StreamBody:
    """A streamed reply; a failure after the first chunk propagates so the server drops the
    connection instead of finishing the chunked body (the target then sees a read error)."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def __iter__(self) -> Iterator[bytes]:
        assert self._reply.stream is not None
        try:
            yield from self._reply.stream
        except Failure as failure:
            raise _StreamAborted(f"reply aborted mid-stream: {failure.message}") from None

    def close(self) -> None:
        self._reply.close()


class _StreamAborted(Exception):
    """Raised to make the WSGI server drop a connection whose reply cannot be completed."""
