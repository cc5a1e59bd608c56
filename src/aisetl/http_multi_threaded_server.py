"""Adapter: the standard-library HTTP server (HTTP/1.1, keep-alive, one thread per connection).

Beyond the reference's server of the same name: keep-alive instead of a connection per
request, a listen backlog of 2048 instead of 5, chunked request bodies, chunked streaming
replies whose failures break the framing (never a silently truncated object), several worker
processes on one port, and a graceful stop that finishes the objects in flight.
"""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, BinaryIO, cast

from aisetl import drain as draining
from aisetl.acceptor import STOP_LINGER, Acceptor
from aisetl.deadline import peer_closed
from aisetl.edge import Body, Headers, Refused, RequestHead, content_length, is_metrics_request
from aisetl.flow import Flow, FlowPerProcess
from aisetl.head_deadline import HeadWatchdog
from aisetl.http11 import (
    BodyReader,
    HeadError,
    body_reader,
    drain,
    read_all,
    read_header_fields,
    write_reply,
)
from aisetl.metrics import metrics_reply
from aisetl.protocol import DEFAULT_PORT, is_health_check
from aisetl.reply import Reply, health_reply, malformed_request_reply
from aisetl.server import ETLServer
from aisetl.sources import ClientGone, Failure
from aisetl.thread_cache import ThreadCache
from aisetl.watch import in_flight
from aisetl.workers import bind_socket, run_workers

_MAX_REQUEST_LINE = 65536


def _http_version(text: str) -> tuple[int, int] | None:
    """``HTTP/x.y`` as numbers, or ``None`` when it is not such a version."""
    major, dot, minor = text[5:].partition(".") if text.startswith("HTTP/") else ("", "", "")
    if not dot or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in (major, minor)):
        return None
    return int(major), int(minor)


class HTTPMultiThreadedServer(ETLServer):
    """ETL server on the standard library's HTTP server."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self._flow = FlowPerProcess(lambda: Flow(self, loop_direct_puts=True))

    @property
    def flow(self) -> Flow:
        """This process's :class:`~aisetl.flow.Flow` (created after any fork)."""
        return self._flow.get()

    def start(self, workers: int | None = None) -> None:
        """Serve until SIGTERM; ``workers`` processes (default ``NUM_WORKERS`` or 1)."""
        sock = bind_socket(self.host, self.port)
        count = workers or self.settings.num_workers or 1
        self.logger.info(
            "HTTP multi-threaded server on %s:%d, %d worker(s)", self.host, self.port, count
        )
        run_workers(sock, count, self.serve_socket, self.settings.grace_period, self.logger)

    def serve_socket(self, sock: socket.socket) -> None:
        """Serve an already listening socket in this process until SIGTERM or SIGINT."""
        httpd = ThreadingETLHTTPServer(sock, self)

        def stop(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            self.logger.info("Received %s: finishing objects in flight", name)
            draining.begin(name)
            threading.Thread(
                target=draining.then(httpd.shutdown, in_flight, self.settings.grace_period),
                daemon=True,
            ).start()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        try:
            httpd.serve_forever(poll_interval=0.5)
        finally:
            httpd.finish_in_flight(max(self.settings.grace_period - draining.seconds(), 0.0))
            httpd.server_close()
            self.logger.info("Server stopped")


class ThreadingETLHTTPServer(HTTPServer):
    """One thread per connection on a socket that is already listening.

    The accepting thread (:class:`~aisetl.acceptor.Acceptor`) answers readiness probes
    itself and hands other connections to :class:`~aisetl.thread_cache.ThreadCache` threads
    without waiting for one to start: in a burst, a probe queues behind the accepts only.
    """

    def __init__(self, sock: socket.socket, etl: HTTPMultiThreadedServer) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.etl = etl
        self.head_deadline = HeadWatchdog(etl.settings.header_timeout)
        self.stopping = False
        self._in_flight = 0
        # Connections handed to a thread whose first request has not begun: a stop waits a
        # moment for them too, since their client has already connected to this process.
        self._unstarted: set[socket.socket] = set()
        self._idle = threading.Condition()
        self._connections: ThreadCache[tuple[socket.socket, Any]] = ThreadCache(
            self._serve_connection, name="aisetl-connection"
        )
        self._acceptor = Acceptor(
            sock,
            self._hand_over,
            lambda exc: etl.logger.warning("accepting a connection failed: %s", exc),
        )

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until :meth:`shutdown`."""
        self._acceptor.run(poll_interval)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has (from another thread)."""
        self._acceptor.stop()

    def _hand_over(self, accepted: tuple[socket.socket, Any]) -> None:
        with self._idle:
            self._unstarted.add(accepted[0])
        self._connections.submit(accepted)

    def _serve_connection(self, accepted: tuple[socket.socket, Any]) -> None:
        conn, address = accepted
        try:
            self.finish_request(conn, address)
        except Exception:
            self.handle_error(conn, address)
        finally:
            with self._idle:
                self._unstarted.discard(conn)
                self._idle.notify_all()
            self.shutdown_request(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An unexpected error serving a connection: logged (not printed to stderr)."""
        self.etl.logger.exception("error while serving %s", client_address)

    def begin_request(self, conn: socket.socket) -> None:
        """Count a request in flight (on ``conn``)."""
        with self._idle:
            self._in_flight += 1
            self._unstarted.discard(conn)

    def end_request(self) -> None:
        """Count a request done."""
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def finish_in_flight(self, timeout: float) -> None:
        """Stop taking new requests and wait (at most ``timeout``) for those in flight, and
        (at most :data:`STOP_LINGER` seconds) for connections yet to send their first."""
        self.stopping = True
        started = time.monotonic()
        with self._idle:
            self._idle.wait_for(
                lambda: self._in_flight == 0 and not self._unstarted,
                timeout=min(STOP_LINGER, timeout),
            )
            left = max(timeout - (time.monotonic() - started), 0.0)
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout=left):
                self.etl.logger.warning(
                    "%d request(s) still running after the grace period", self._in_flight
                )


class _Handler(BaseHTTPRequestHandler):
    """Translates one HTTP/1.1 exchange to and from the neutral flow."""

    protocol_version = "HTTP/1.1"
    server: ThreadingETLHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(self.server.etl.settings.keepalive_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Access logging is off; failures are logged by the flow."""

    def handle_one_request(self) -> None:
        watchdog = self.server.head_deadline
        self._head: Any = None
        try:
            if watchdog.seconds and not cast(io.BufferedReader, self.rfile).peek(
                1
            ):  # idle: the keep-alive timeout
                self.close_connection = True
                return
            if watchdog.seconds:  # from the first byte on, the head has a deadline
                self._head = watchdog.arm(self.connection)
            line = self.rfile.readline(_MAX_REQUEST_LINE + 1)
        except OSError:
            self.close_connection = True
            return
        if not line or watchdog.late(self._head):
            self.close_connection = True
            return
        if len(line) > _MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", "GET"
            self.send_error(414)
            return
        self.raw_requestline = line
        parsed = self.parse_request()
        if self._head is not None and not watchdog.disarm(self._head):
            self.close_connection = True  # answered 408 meanwhile: the head may be cut short
            return
        if not parsed:
            return
        self.server.begin_request(self.connection)
        try:
            self._serve()
        except (ClientGone, OSError) as exc:
            self.server.etl.flow.client_gone(exc)
            self.close_connection = True
        finally:
            self.server.end_request()
        if self.server.stopping:
            self.close_connection = True

    def parse_request(self) -> bool:
        """The request line and head, by the rules of the standard library's own
        ``parse_request``, with the header fields read by
        :func:`~aisetl.http11.read_header_fields` instead of the email parser (a tenth of
        the time, and a line that is not a header field is a 400 instead of the end of the
        head). ``False`` when the request was answered or is to be dropped."""
        self.command = None  # type: ignore[assignment]
        self.request_version = self.default_request_version
        self.close_connection = True
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = line
        words = line.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _http_version(version)
            if number is None:
                self.send_error(400, f"Bad request version ({version!r})")
                return False
            if number >= (2, 0):
                self.send_error(505, f"Invalid HTTP version ({version[5:]}): send HTTP/1.1")
                return False
            self.close_connection = number < (1, 1)
            self.request_version = version
        if len(words) > 3:
            self.send_error(400, f"Bad request syntax ({line!r})")
            return False
        command, path = words[0], words[1] if len(words) > 1 else ""
        if len(words) < 3:  # HTTP/0.9: a bare GET
            self.close_connection = True
            if len(words) == 1 or command != "GET":
                self.send_error(400, f"Bad request syntax ({line!r})")
                return False
        self.command = command
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        try:
            fields = read_header_fields(self.rfile)  # type: ignore[arg-type]
            self.headers = Headers(fields)  # type: ignore[assignment]
        except HeadError as error:
            self.send_error(error.status, error.message)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    # --- dispatch ----------------------------------------------------------------------------

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        method = self.command
        if is_health_check(method, path):
            self._send(health_reply())
            return
        if is_metrics_request(method, path):
            self._send(metrics_reply(self.server.etl.settings))
            return
        length = self.headers.get("Content-Length")
        coding = self.headers.get("Transfer-Encoding")
        head = RequestHead(
            method,
            path,
            query,
            cast(Headers, self.headers),
            content_length(length),
            coding is not None,
        )
        flow = self.server.etl.flow
        admitted = flow.admit(head)
        if isinstance(admitted, Refused):
            self.close_connection = self.close_connection or admitted.close
            self._send(flow.refusal(admitted))
            return
        request = admitted.request
        with flow.watch(request, gone=lambda: peer_closed(self.connection)) as watch:
            raw: BodyReader | None = None
            body: bytes | BinaryIO | None = None
            try:
                if admitted.body is not Body.NONE:
                    raw, close = body_reader(
                        self.rfile,  # type: ignore[arg-type]
                        length,
                        coding,
                        self.server.etl.settings.max_body_size,
                    )
                    self.close_connection = self.close_connection or close
                if raw is not None and admitted.body is Body.STREAM:
                    body = io.BufferedReader(raw, 256 * 1024)
                elif raw is not None:
                    watch.reserve(head.content_length)  # waits, unread, while memory is short
                    body = read_all(self.rfile, raw)  # type: ignore[arg-type]
            except Failure as failure:
                self.close_connection = True
                self._send(watch.reply(flow.failure_reply(request.path, failure)))
                return
            reply = flow.handle(request, body, watch)
            try:
                self._send(watch.reply(reply))
            finally:
                if raw is not None and not self.close_connection and not drain(raw):
                    self.close_connection = True

    # --- replies -----------------------------------------------------------------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while parsing the request: plain text, then close."""
        self.close_connection = True
        if HeadWatchdog.late(getattr(self, "_head", None)):
            return  # the 408 is out and the socket is shut: a head cut short is no error
        self._send(malformed_request_reply(code, message or explain or "cannot parse it"))

    def _send(self, reply: Reply) -> None:
        chunked = self.request_version != "HTTP/1.0"
        stopping = self.server.stopping or draining.reason() is not None
        if stopping or (reply.stream is not None and not chunked):
            self.close_connection = True  # an HTTP/1.0 stream ends when the connection does
        try:
            write_reply(
                self.wfile,  # type: ignore[arg-type]
                reply,
                close=self.close_connection,
                chunked=chunked,
                head_only=self.command == "HEAD",  # the answer to a HEAD has no body
            )
        except Failure:
            # The status line is gone: break the framing so the target sees a read error
            # (the object's watch logs why).
            self._abort()

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
