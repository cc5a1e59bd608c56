"""Run a WSGI app object under gunicorn, configured in code (no config file, no argv).

The worker's answer to a malformed request relies on parts of gunicorn that are not public
(:data:`GUNICORN_METHODS`, :data:`GUNICORN_ATTRIBUTES`, chunk errors that are parse errors),
checked at import; where one is missing, a :class:`~aisetl._hooks.DependencyWarning` says what
is lost (and without the method, :data:`ETLThreadWorker` is gunicorn's own worker).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    InvalidChunkSize,
    LimitRequestHeaders,
    LimitRequestLine,
    ParseException,
)
from gunicorn.http.parser import Parser
from gunicorn.http.unreader import Unreader
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from aisetl import _gunicorn_heads, drain, gpus, pod
from aisetl._gunicorn_heads import HeadReadingWorker
from aisetl._gunicorn_replies import HeadHoldingSocket
from aisetl._hooks import missing, warn_missing
from aisetl.head_deadline import HeadWatchdog
from aisetl.http11 import serialize
from aisetl.reply import malformed_request_reply
from aisetl.watch import in_flight
from aisetl.workers import tune_interpreter

#: What the client sent wrong. (Before gunicorn 27 the chunk errors were IOErrors, which the
#: threaded worker takes for a lost connection: it closes it without calling handle_error.)
_CHUNK_ERRORS = (InvalidChunkSize, ChunkMissingTerminator)
_PARSE_ERRORS = (ParseException, *_CHUNK_ERRORS)
#: Parse errors whose status gunicorn does not keep on the exception.
_STATUS = {LimitRequestLine: 414, LimitRequestHeaders: 431}
#: The worker's method the subclass overrides, and the state it reads.
GUNICORN_METHODS = (
    "handle_error",
    "handle_request",
    "handle_exit",
    "handle",
    *_gunicorn_heads.METHODS,
)
GUNICORN_ATTRIBUTES = ("log", *_gunicorn_heads.ATTRIBUTES)
#: What the head reader needs of a connection and of its parser.
CONNECTION_PARTS = (
    (getattr(gthread, "TConn", None), ("init", "close"), ("parser", "sock", "client")),
    (Parser, (), ("unreader",)),
    (Unreader, ("unread",), ()),
)
LOST = (
    "a request gunicorn cannot parse gets gunicorn's own HTML error page "
    "instead of aisetl's plain-text error, and repeated headers reach the server joined by "
    "commas (which copy of Ais-Node-Url came first is lost)"
)


_request = threading.local()
#: The option of :func:`run_gunicorn` that carries ``AISETL_HEADER_TIMEOUT`` to the workers
#: (not a gunicorn setting: the workers are forked from the process that sets it).
HEADER_TIMEOUT_OPTION = "aisetl_header_timeout"
_header_timeout = 5.0


class ConnectionGone(Exception):
    """Raised by the application when the client hung up: close without an answer."""


def current_headers() -> list[tuple[str, str]] | None:
    """The request headers, every copy apart, when our worker serves this thread's request.

    (gunicorn's WSGI environ joins repeated headers with commas, which loses which copy came
    first.) ``None`` under another worker.
    """
    headers: list[tuple[str, str]] | None = getattr(_request, "headers", None)
    return headers


class ParseErrorWorker(HeadReadingWorker):
    """gunicorn's threaded worker; a request it cannot parse is answered in our error format.

    (gunicorn's own answer is an HTML page.) This covers a body with broken chunk framing too:
    the error rises out of the application's read, and gunicorn then closes the connection,
    which a reply from the application could not make it do. Other errors are gunicorn's.
    """

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: drain (/health answers 503) until the objects in flight are done."""
        if drain.reason() is not None:
            return
        drain.begin(signal.Signals(sig).name)
        stop = super().handle_exit
        grace = float(self.cfg.graceful_timeout)
        threading.Thread(
            target=drain.then(lambda: stop(sig, frame), in_flight, grace), daemon=True
        ).start()

    head_deadline: HeadWatchdog | None = None

    @property
    def head_seconds(self) -> float:  # type: ignore[override]
        """The header-read deadline (``AISETL_HEADER_TIMEOUT``), for the main loop's reader."""
        return _header_timeout

    def handle(self, conn: Any) -> Any:
        # A head the main loop read whole needs no deadline; one it handed over incomplete
        # (too large) or bytes read ahead behind the last request are watched here.
        ready = getattr(conn, "aisetl_head_read", False)
        conn.aisetl_head_read = False
        watchdog = self.head_deadline
        if watchdog is None:
            watchdog = self.head_deadline = HeadWatchdog(_header_timeout)
        if ready or not watchdog.seconds:
            return super().handle(conn)
        _request.head = watchdog.arm(conn.sock)
        try:
            return super().handle(conn)
        finally:
            watchdog.disarm(_request.head)
            _request.head = None

    def handle_request(self, req: Any, conn: Any) -> Any:
        head = getattr(_request, "head", None)
        if head is not None and self.head_deadline and not self.head_deadline.disarm(head):
            return False  # answered 408 while the head was read: close
        _request.headers = req.headers
        real = conn.sock
        conn.sock = writes = HeadHoldingSocket(real)  # the head goes out with the body
        try:
            handled = super().handle_request(req, conn)
        except BaseException:
            with contextlib.suppress(OSError):
                writes.flush()
            raise
        finally:
            conn.sock = real
            _request.headers = None
        writes.flush()
        return handled

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """Whether the connection serves another request; a body read to its end has nothing
        to drain, so gunicorn's drain (two socket-timeout changes, system calls that give up
        the interpreter lock) is skipped for it."""
        if keepalive and _body_read_whole(conn):
            return True
        parent: Callable[[Any, bool], bool] | None = getattr(super(), "_keepalive_after", None)
        return keepalive if parent is None else parent(conn, keepalive)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if HeadWatchdog.late(getattr(_request, "head", None)):
            self.log.info("request head from %s not complete in time: answered 408", addr)
            return
        if isinstance(exc, ConnectionGone):
            self.log.info("client %s went away: %s", addr, exc)
            return
        if not isinstance(exc, _PARSE_ERRORS):
            super().handle_error(req, client, addr, exc)
            return
        status = _STATUS.get(type(exc), getattr(exc, "code", 400))
        status = status if isinstance(status, int) and 400 <= status < 600 else 400
        self.log.warning("malformed request from %s: %s", addr, exc)
        try:
            client.sendall(serialize(malformed_request_reply(status, str(exc))))
        except OSError:
            self.log.debug("could not answer a malformed request from %s", addr)


def _body_read_whole(conn: Any) -> bool:
    """Whether the connection's last request had a sized body that was read to its end."""
    body = getattr(getattr(conn.parser, "mesg", None), "body", None)
    reader = getattr(body, "reader", None)
    return (
        isinstance(reader, LengthReader)
        and reader.length == 0
        and getattr(body, "failed", False) is False
        and isinstance(getattr(body, "buf", None), io.BytesIO)
        and body.buf.tell() == 0  # type: ignore[union-attr]
    )


def missing_hooks(base: type) -> list[str]:
    """What of :data:`GUNICORN_METHODS` and :data:`GUNICORN_ATTRIBUTES` ``base`` lacks, and of
    :data:`CONNECTION_PARTS` gunicorn's connection and parser."""
    lacking = missing(base, GUNICORN_METHODS, GUNICORN_ATTRIBUTES)
    for cls, methods, attributes in CONNECTION_PARTS:
        lacking += ["gthread.TConn"] if cls is None else missing(cls, methods, attributes)
    return lacking


#: The worker class named in gunicorn's options (checked once, at import).
ETLThreadWorker: type[Any] = (
    ThreadWorker
    if warn_missing("gunicorn", missing_hooks(ThreadWorker), LOST)
    else ParseErrorWorker
)
if not all(issubclass(error, ParseException) for error in _CHUNK_ERRORS):
    warn_missing(
        "gunicorn",
        ["chunk errors that are parse errors (it raises IOErrors)"],
        "a body with broken chunk framing ends the connection without an answer",
    )


WSGIApp = Callable[..., Iterable[bytes]]


class _EmbeddedApplication(BaseApplication):  # type: ignore[misc]
    """A gunicorn application around an app object built before the workers fork, or built
    in each worker by ``build`` (after its GPU is pinned, see :mod:`aisetl.gpus`)."""

    def __init__(
        self, app: WSGIApp | None, options: dict[str, Any], build: Callable[[], WSGIApp] | None
    ) -> None:
        self._app = app
        self._build = build
        also = options.get("post_fork")

        def post_fork(server: Any, worker: Any) -> None:
            pin_worker_gpu(server, worker)
            if also is not None:
                also(server, worker)

        self._options = {"pre_fork": assign_worker_index, **options, "post_fork": post_fork}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # options newer gunicorn releases added are skipped
                self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        if self._app is None:
            assert self._build is not None
            self._app = self._build()  # in the worker: gunicorn does not preload
        return self._app


def run_gunicorn(app: WSGIApp, options: dict[str, Any]) -> None:
    """Serve ``app`` with gunicorn until it is stopped by a signal."""
    _run(app, None, options)


def run_gunicorn_built_per_worker(build: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
    """Serve the app ``build()`` makes in each worker process, until stopped by a signal."""
    _run(None, build, options)


def _run(app: WSGIApp | None, build: Callable[[], WSGIApp] | None, options: dict[str, Any]) -> None:
    global _header_timeout
    _header_timeout = float(options.get(HEADER_TIMEOUT_OPTION, _header_timeout))
    tune_interpreter()
    with pod.forking(int(options.get("workers", 1))):
        _EmbeddedApplication(app, options, build).run()


def assign_worker_index(server: Any, worker: Any) -> None:
    """gunicorn's pre_fork hook: the lowest index no live worker has (a replacement takes the
    index of the worker it replaces)."""
    taken = {getattr(w, "aisetl_index", None) for w in server.WORKERS.values()}
    worker.aisetl_index = next(i for i in itertools.count() if i not in taken)


def pin_worker_gpu(server: Any, worker: Any) -> None:
    """gunicorn's post_fork hook: the worker sees only its GPU (``AISETL_GPUS``)."""
    gpus.pin_from_env(getattr(worker, "aisetl_index", 0))
