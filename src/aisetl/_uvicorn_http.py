"""uvicorn's HTTP/1.1 protocol, except that a request it cannot parse gets our error format,
and that a whole body can be collected without uvicorn's copies.

uvicorn answers every parse error with the same ``Invalid HTTP request received.``; the parser
knows what was wrong (``Invalid character in Content-Length``, ``Invalid character in chunk
size``, ...), and the client should be told, in the words every other failure uses.
The override relies on parts of uvicorn's protocol that are not public (:data:`UVICORN_METHODS`,
:data:`UVICORN_ATTRIBUTES`), checked at import; where one is missing, :data:`ETLHttpToolsProtocol`
is uvicorn's own protocol and a :class:`~aisetl._hooks.DependencyWarning` says so.

For a body the handler wants whole (its size known and admitted), uvicorn would copy every
64 KiB piece twice (into its buffer, then out of it), pause and resume reading each time, and
wake the handler per piece: :func:`receive_whole` instead writes the pieces the parser gives
straight into one buffer of the body's size (:mod:`aisetl.sized_body`) and wakes the handler
once, when the body is complete.

uvicorn adds a chunked body's trailer fields to the headers of the request being served, with
no bound; here they are counted against a head's limits and dropped (:class:`TrailerFields`).

A reply's status line and headers wait for its first body bytes and go out with them in one
write (uvicorn writes them apart: two system calls per small reply instead of one). A reply
whose body is already whole skips the two ASGI messages altogether: :func:`send_whole` builds
its head and writes it with the body, with the cycle left as uvicorn's own ``send`` would.

A read that holds exactly one whole request is first parsed on its own
(:class:`~aisetl.whole_request.WholeRequestParser`) and offered to an app that can answer it
at once (:class:`ServesNow`): its answer is written from that read, with no scope, cycle or
task of uvicorn's. Everything else, and a request whose answer must wait, goes to uvicorn's
parser as before (the latter with the ASGI app its answer began).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Protocol

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from aisetl._hooks import missing, warn_missing
from aisetl.http11 import (
    MAX_HEADER_LINES,
    MAX_TRAILER_BYTES,
    NOT_TOKEN,
    TOO_MANY_TRAILERS,
    TRAILERS_TOO_LARGE,
    joined,
    serialize,
)
from aisetl.protocol import decode_path
from aisetl.reply import TEXT_PLAIN, Reply, malformed_request_reply
from aisetl.sized_body import SizedBody
from aisetl.sources import ClientGone
from aisetl.whole_request import WholeRequestParser

#: The methods of uvicorn's protocol that the subclass overrides or calls.
UVICORN_METHODS = (
    "send_400_response", "on_headers_complete", "on_body", "on_message_complete",
    "data_received", "_start_asgi_task", "_unset_keepalive_if_required", "on_message_begin",
    "on_response_complete",
)  # fmt: skip
#: Connection state the override reads.
UVICORN_ATTRIBUTES = (
    "url", "logger", "client", "transport", "cycle", "headers", "scope", "app", "flow",
    "pipeline", "access_log", "limit_concurrency", "connections", "tasks", "server_state",
)  # fmt: skip
#: An ASGI application.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
LOST = (
    "a request uvicorn cannot parse gets uvicorn's own 'Invalid HTTP request received.' "
    "instead of the parser's reason in aisetl's error format"
)


class TrailersRefused(ValueError):
    """A chunked body's trailer section over the limits a head has."""


class TrailerFields(list[tuple[bytes, bytes]]):
    """Where uvicorn's ``on_header`` puts the fields that come once a head is complete (a
    chunked body's trailers): counted and dropped. uvicorn would add them, without a bound, to
    the headers of the request being served."""

    lines = 0  # (class defaults: a request without trailers runs no Python to make one)
    size = 0

    def append(self, field: tuple[bytes, bytes]) -> None:
        self.lines += 1
        self.size += len(field[0]) + len(field[1]) + 4  # as sent: "name: value\r\n"
        if self.lines > MAX_HEADER_LINES:
            raise TrailersRefused(TOO_MANY_TRAILERS)
        if self.size > MAX_TRAILER_BYTES:
            raise TrailersRefused(TRAILERS_TOO_LARGE)


class ParseErrorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a malformed request is answered with the parser's reason."""

    def send_400_response(self, msg: str) -> None:
        error = sys.exc_info()[1]  # set while uvicorn handles the parser's exception
        detail = str(error) if isinstance(error, httptools.HttpParserError) and str(error) else msg
        if error is not None and isinstance(error.__context__, TrailersRefused):
            detail = str(error.__context__)  # (raised in a parser callback)
        self.logger.warning("malformed request from %s: %s", self.client, detail)
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            # A reply is on its way: an error head inside it would corrupt it. Closing the
            # connection leaves it unfinished, which the client sees.
            self.transport.close()
            return
        raw_path = self.url.partition(b"?")[0].decode("latin-1")
        path = decode_path(raw_path) if raw_path.startswith("/") else None
        self.transport.write(serialize(malformed_request_reply(400, detail, path)))
        self.transport.close()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._adopt_cycle()

    def _adopt_cycle(self) -> None:
        """Make the cycle of the request whose head just ended ours (once; from uvicorn's
        ``on_headers_complete``, or from the start of its task within it)."""
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.scope is self.scope  # a request to serve, no upgrade
            and not isinstance(self.headers, TrailerFields)
        ):
            self.headers = TrailerFields()  # (the request keeps its own list in its scope)
            if _CYCLE_HOOKS_OK:
                cycle.__class__ = _Cycle  # the same object, with send() below
                cycle.aisetl_ours = True  # type: ignore[attr-defined]

    def on_body(self, body: bytes) -> None:
        whole: SizedBody | None = getattr(self.cycle, "aisetl_whole", None)
        if whole is None or self.cycle.response_complete:
            super().on_body(body)
            return
        whole.add(body)  # one copy into place, no pause: the handler admitted this size

    # A request that came whole in one read is parsed on its own and answered from that read
    # when the app can answer it at once (:class:`ServesNow`): no scope, no cycle, no task.

    aisetl_front: WholeRequestParser | None = None  # (None after a read it could not take)
    aisetl_between = True  # uvicorn's parser is between two requests
    aisetl_app: ASGIApp | None = None  # what runs for the next request uvicorn's parser reads

    def data_received(self, data: bytes) -> None:
        if self._serve_whole(data):
            return
        try:
            super().data_received(data)
        finally:
            self.aisetl_app = None  # (taken by the request it was for, in that read)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.aisetl_between = False

    def on_message_complete(self) -> None:
        self.aisetl_between = True
        super().on_message_complete()

    def _serve_whole(self, data: bytes) -> bool:
        """Answer ``data`` when it is one whole request the app answers at once. ``False``:
        uvicorn's parser is to read it (and run :attr:`aisetl_app` for it, when set)."""
        serve = getattr(self.app, "aisetl_serve_whole", None)
        cycle = self.cycle
        if (
            serve is None
            or not self.aisetl_between
            or self.pipeline
            or self.access_log
            or (cycle is not None and not cycle.response_complete)
            or self.flow.write_paused
            or self.transport.is_closing()
            or self._at_concurrency_limit()
        ):
            return False
        front = self.aisetl_front or WholeRequestParser()
        if not front.take(data):
            self.aisetl_front = None
            return False
        self.aisetl_front = front
        self._unset_keepalive_if_required()  # (as uvicorn does for each read)
        keep_alive = front.keep_alive
        try:
            answer = serve(front.method, front.target, front.headers, front.body)
        except Exception:
            self.logger.exception("Exception in ASGI application")
            answer = Reply(500, {"Content-Type": TEXT_PLAIN}, b"Internal Server Error")
            keep_alive = False
        if isinstance(answer, Reply):
            if self._write_whole_now(answer, front.method == "HEAD", keep_alive):
                return True
            answer = _Sends(answer)
        self.aisetl_app = answer
        return False

    def _at_concurrency_limit(self) -> bool:
        """Whether uvicorn would answer the next request 503 (``limit_concurrency``)."""
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)

    def _write_whole_now(self, reply: Reply, head_only: bool, keep_alive: bool) -> bool:
        """Write a reply with no cycle, as :func:`send_whole` would (``False``: not one it
        covers, nothing written)."""
        if reply.stream is not None:
            return False
        body = reply.body
        default = self.server_state.default_headers
        head = _head(reply.status, default, reply.raw_headers(), len(body), keep_alive)
        if head is None:
            return False
        _put_on_wire(self.transport, head, body, head_only, keep_alive)
        self.on_response_complete()  # (counts the request, arms the idle timer)
        return True

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if cycle is self.cycle:
            self._adopt_cycle()
        began, self.aisetl_app = self.aisetl_app, None
        super()._start_asgi_task(cycle, app if began is None else began)


class ServesNow(Protocol):
    """An ASGI app that may answer a whole request from the read that held it."""

    def aisetl_serve_whole(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Reply | ASGIApp | None:
        """The reply to the request ``method target`` (as sent) with ``headers`` (ASGI's
        form) and ``body``; or an ASGI app to run for it instead (the rest of its work, which
        must wait); or ``None``: the app itself serves it, as any request. Called from the
        protocol's ``data_received``: it must not block."""


class _Sends:
    """An ASGI app that only sends one reply (one the protocol could not write itself)."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from aisetl.asgi_io import send_reply  # (asgi_io builds on this module)

        await send_reply(send, self._reply)


async def receive_whole(receive: Callable[[], Awaitable[Any]], length: int) -> bytes | None:
    """The rest of a request body of ``length`` bytes, or ``None`` when ``receive`` is not
    our protocol's (then read it message by message)."""
    cycle = getattr(receive, "__self__", None)
    if not isinstance(cycle, RequestResponseCycle) or not getattr(cycle, "aisetl_ours", False):
        return None
    if not cycle.more_body and len(cycle.body) == length:  # it came with the head (small)
        body = bytes(cycle.body)
        cycle.body = bytearray()
        cycle.flow.resume_reading()
        return body
    whole = SizedBody(length)
    if cycle.body:
        whole.add(cycle.body)
    cycle.body = bytearray()
    cycle.aisetl_whole = whole  # type: ignore[attr-defined]
    if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
        cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        cycle.waiting_for_100_continue = False
    cycle.flow.resume_reading()  # (the first pieces may have paused it)
    while cycle.more_body and not cycle.disconnected and not cycle.response_complete:
        await cycle.message_event.wait()
        cycle.message_event.clear()
    cycle.aisetl_whole = None  # type: ignore[attr-defined]
    if cycle.disconnected:
        raise ClientGone("client disconnected before the body was complete")
    return whole.value()


#: Bytes a header value may not hold (control characters other than tab).
_NOT_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: A request header asking to close the connection after the reply.
_CLOSE = (b"connection", b"close")
#: Status lines by code, for the codes this module writes itself.
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


async def send_whole(
    send: Callable[[Any], Awaitable[None]],
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    head_only: bool = False,
) -> bool:
    """Send a reply whose body is whole: its head (uvicorn's default headers, ``headers``, a
    ``Content-Length``) and body in one write, then finish the cycle as uvicorn's ``send`` of
    the two ASGI messages would (keep-alive or close, the next pipelined request).

    ``False``, with nothing sent, when ``send`` is not our cycle's or the reply is not one this
    covers (a ``Connection`` header of its own, a header uvicorn would refuse, an access log
    to write): send it message by message then.
    """
    cycle = getattr(send, "__self__", None)
    if not isinstance(cycle, _Cycle):
        return False
    head = _whole_head(cycle, status, headers, len(body))
    if head is None:
        return False
    await _drained(cycle)
    _write_whole(cycle, head, body, head_only)
    await _drained(cycle)  # as _Cycle.send: return once the bytes are on their way
    return True


def _whole_head(
    cycle: _Cycle, status: int, headers: list[tuple[bytes, bytes]], length: int
) -> bytes | None:
    """The head :func:`send_whole` writes (``None``: a reply it does not cover)."""
    if cycle.response_started or cycle.access_log:
        return None
    if _CLOSE in cycle.scope["headers"]:  # (uvicorn < 0.53 decides this in send, not before)
        cycle.keep_alive = False
    return _head(status, cycle.default_headers, headers, length, cycle.keep_alive)


def _head(
    status: int,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    length: int,
    keep_alive: bool,
) -> bytes | None:
    """A reply's status line and headers, with uvicorn's default headers, a
    ``Content-Length`` and, unless ``keep_alive``, ``Connection: close`` (``None``: a status
    or a header line this module does not write)."""
    line = _STATUS_LINES.get(status)
    if not line:
        return None
    parts = [line]
    for pair in (*default_headers, *headers):
        if pair not in _CHECKED and not _check(pair):
            return None
        parts += (pair[0], b": ", pair[1], b"\r\n")
    parts += (b"content-length: ", b"%d" % length, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _write_whole(cycle: _Cycle, head: bytes, body: bytes, head_only: bool) -> None:
    """Write a reply's head and body and finish the cycle, as uvicorn's ``send`` would."""
    if cycle.disconnected:  # (uvicorn's send drops what is sent to a client that left)
        return
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    head_only = head_only or cycle.scope["method"] == "HEAD"  # (a HEAD reply has no body)
    cycle.response_complete = True
    cycle.message_event.set()
    _put_on_wire(cycle.transport, head, body, head_only, cycle.keep_alive)
    cycle.on_response()


def _put_on_wire(
    transport: Any, head: bytes, body: bytes, head_only: bool, keep_alive: bool
) -> None:
    """Write a whole reply (its head alone for HEAD); close the connection unless kept alive."""
    for data in (head,) if head_only else joined(head, body):
        transport.write(data)
    if not keep_alive:
        transport.close()


#: Header lines already found fit for :func:`send_whole` (most replies repeat the same few).
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX = 256


def _check(pair: tuple[bytes, bytes]) -> bool:
    """Whether :func:`send_whole` may write this header line (remembered when it may)."""
    name, value = pair
    if name == b"connection" or NOT_TOKEN.search(name) or _NOT_VALUE.search(value):
        return False
    if len(_CHECKED) >= _CHECKED_MAX:  # (the date changes every second: start again)
        _CHECKED.clear()
    _CHECKED.add(pair)
    return True


async def _drained(cycle: RequestResponseCycle) -> None:
    """Return once the transport takes writes again (at once unless it is paused)."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()


class _Cycle(RequestResponseCycle):
    """uvicorn's request cycle, except that the header block is written with the body."""

    aisetl_held: bytes | None = None

    async def send(self, message: Any) -> None:
        await self._send(message)
        # The last body bytes may still wait in the transport's buffer: return once it is
        # drained, so the memory the reply holds stays reserved until it is on the wire
        # (AISETL_MAX_INFLIGHT_BYTES), and a slow reader holds back this object only.
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await _drained(self)

    async def _send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            real = self.transport
            hold = _Hold(real)
            self.transport = hold  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = real
            self.aisetl_held = hold.held
            return
        held = self.aisetl_held
        if held is None:
            await super().send(message)
            return
        self.aisetl_held = None
        real = self.transport
        first = _Prepend(real, held)
        self.transport = first  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = real
            if not first.used:  # no body bytes (HEAD, an empty body): the headers alone
                first.flush()


class _Hold:
    """A transport whose writes are kept (the header block of ``http.response.start``)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        self.held = data if self.held is None else self.held + data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Prepend:
    """A transport whose first write carries the held header block in front."""

    def __init__(self, real: Any, held: bytes) -> None:
        self._real = real
        self._held = held
        self.used = False

    def write(self, data: bytes) -> None:
        if self.used:
            self._real.write(data)
            return
        self.used = True
        for part in joined(self._held, data):
            self._real.write(part)

    def flush(self) -> None:
        if not self.used:
            self.used = True
            self._real.write(self._held)

    def close(self) -> None:
        self.flush()
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def missing_hooks(base: type) -> list[str]:
    """What of :data:`UVICORN_METHODS` and :data:`UVICORN_ATTRIBUTES` ``base`` lacks."""
    return missing(base, UVICORN_METHODS, UVICORN_ATTRIBUTES)


#: What :func:`receive_whole` and :class:`_Cycle` use of uvicorn's request cycle.
CYCLE_METHODS = ("send",)
CYCLE_ATTRIBUTES = (
    "body", "more_body", "disconnected", "response_complete", "response_started",
    "message_event", "flow", "waiting_for_100_continue", "transport", "keep_alive",
    "default_headers", "access_log", "on_response", "scope",
)  # fmt: skip
#: Whether whole bodies skip uvicorn's copies (checked once, at import).
_CYCLE_HOOKS_OK = not warn_missing(
    "uvicorn",
    missing(RequestResponseCycle, CYCLE_METHODS, CYCLE_ATTRIBUTES)
    + missing(FlowControl, ("drain",), ("write_paused",)),
    "request bodies are copied by uvicorn as usual, reply heads are written apart, and a "
    "reply's memory is released before it is sent",
)

#: The protocol class to give uvicorn as ``http=``.
ETLHttpToolsProtocol: type[HttpToolsProtocol] = (
    HttpToolsProtocol
    if warn_missing("uvicorn", missing_hooks(HttpToolsProtocol), LOST)
    else ParseErrorProtocol
)
