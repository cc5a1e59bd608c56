"""Framework-neutral handling of one object: source, transform, destination, error mapping.

An adapter turns its framework's request into an :class:`ObjectRequest` (plus the body, when
the request has one), calls :meth:`Flow.handle` from a worker thread, and writes the
:class:`Reply` back. Every protocol decision is made here, once, for every server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

from aisetl.aio import LoopIO, TransportFailed
from aisetl.direct_put import DirectPut
from aisetl.limiter import TransformLimiter
from aisetl.outbound import OutboundClient
from aisetl.protocol import (
    HEADER_DIRECT_PUT_LENGTH,
    HEADER_EMPTY_RESULT,
    QPARAM_ETL_ARGS,
    QPARAM_ETL_FQN,
    WS_KEY_ETL_ARGS,
    WS_KEY_FQN,
    WS_KEY_PATH,
    WS_KEY_PIPELINE,
    InvalidPipelineError,
    decode_path,
    fqn_allowed,
    parse_pipeline,
    parse_query,
    parse_ws_control,
    sanitize_fqn,
    upstream_url,
)
from aisetl.reply import TEXT_PLAIN, Reply, failure_text
from aisetl.sources import (
    BytesSource,
    ClientGone,
    Failure,
    FileSource,
    Source,
    StreamSource,
    UpstreamSource,
    upstream_read_failed,
    upstream_refused,
    upstream_unreachable,
)

if TYPE_CHECKING:
    from aisetl.server import ETLServer

T = TypeVar("T")
RunAsync = Callable[[Awaitable[Any]], Any]


@dataclass(frozen=True)
class ObjectRequest:
    """One object to transform, as the target described it."""

    path: str
    etl_args: str = ""
    fqn: str = ""
    pipeline: str | None = None
    from_target: bool = False  # hpull without FQN: fetch the bytes from the target

    @classmethod
    def from_http(
        cls, method: str, raw_path: str, query: str, node_url: str | None
    ) -> ObjectRequest:
        """Build from an HTTP request: method, raw (still escaped) path, raw query, hop header."""
        params = parse_query(query) if query else {}
        return cls(
            path=decode_path(raw_path),
            etl_args=params.get(QPARAM_ETL_ARGS, ""),
            fqn=params.get(QPARAM_ETL_FQN, "").strip(),
            pipeline=node_url,
            from_target=method == "GET",
        )

    @classmethod
    def from_ws(cls, control: dict[str, str]) -> ObjectRequest:
        """Build from a decoded WebSocket control message."""
        return cls(
            path=control[WS_KEY_PATH],
            etl_args=control[WS_KEY_ETL_ARGS],
            fqn=control[WS_KEY_FQN].strip(),
            pipeline=control[WS_KEY_PIPELINE],
        )


@dataclass(frozen=True)
class WsMessage:
    """One WebSocket reply: binary content, or text meaning "delivered" (or a failure)."""

    data: bytes | str
    failed: bool = False


class InlinePolicy:
    """Learns whether a buffered transform is quick enough to run on an event loop thread.

    Handing an object to a thread pool and back costs more than a quick transform itself (on
    two cores it doubles the server's CPU per 1 KiB object), so an event-loop server may run
    quick ones inline. Every transform call is timed; after ``streak`` calls in a row that
    each took at most ``limit`` seconds, :attr:`inline` turns true. A slow call resets the
    streak. A slow call that ran inline holds inline execution off for a while (1 s, doubling
    up to 60 s while it keeps happening), so a transform whose CPU cost varies blocks the loop
    rarely and briefly; one that *waited* (for I/O, a lock, a sleep) ends inline execution for
    good, since waiting code must never run on the loop.
    """

    def __init__(self, limit: float = 0.001, streak: int = 32) -> None:
        self.limit = limit
        self.streak = streak
        self._fast = 0
        self._hold_until = 0.0
        self._penalty = 1.0
        self._never = False

    @property
    def inline(self) -> bool:
        """Whether the next quick-looking call may run inline."""
        return (
            not self._never and self._fast >= self.streak and time.monotonic() >= self._hold_until
        )

    def record(self, seconds: float, inline: bool, waited: bool = False) -> None:
        """Account for one transform call that took ``seconds`` (``waited``: it blocked)."""
        if seconds <= self.limit:
            self._fast += 1
            if self._fast >= 1000 * self.streak:
                self._penalty = 1.0
            return
        self._fast = 0
        if waited:
            self._never = True
        elif inline:
            self.hold()

    def hold(self) -> None:
        """Keep inline execution off for a while (longer each time)."""
        self._fast = 0
        self._hold_until = time.monotonic() + self._penalty
        self._penalty = min(self._penalty * 2, 60.0)


#: Local files up to this size are read on the event loop (page-cached: microseconds).
SMALL_FILE = 64 * 1024


def _small_file(path: str) -> bool:
    """Whether ``path`` is a file small enough to read without leaving the loop."""
    try:
        info = os.stat(path)
    except OSError:
        return True  # reading it fails at once, with the right answer
    return stat.S_ISREG(info.st_mode) and info.st_size <= SMALL_FILE


def _is_bytes_or_none(body: object) -> bool:
    return body is None or isinstance(body, bytes)


def _voluntary_switches() -> int:
    """Times this thread gave up the CPU to wait (Linux; 0 elsewhere)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw if _RUSAGE_THREAD else 0


_RUSAGE_THREAD = resource is not None and hasattr(resource, "RUSAGE_THREAD")


class _CallClock:
    """How long a call took, for :class:`InlinePolicy`, unaffected by preemption.

    A call that waited for something (I/O, a sleep, a lock: the thread gave up the CPU) is
    judged by its wall time; one that never waited by its CPU time, so a quick transform whose
    thread happened to be preempted by the OS is not taken for a slow one.
    """

    __slots__ = ("_cpu", "_switches", "_wall")

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()
        self._switches = _voluntary_switches()

    def seconds(self) -> float:
        """The call's duration as the policy should see it."""
        wall = time.perf_counter() - self._wall
        if not _RUSAGE_THREAD or self.waited():
            return wall
        return min(wall, time.thread_time() - self._cpu)

    def waited(self) -> bool:
        """Whether the thread gave up the CPU to wait during the call (Linux only)."""
        return _RUSAGE_THREAD and _voluntary_switches() != self._switches


class _RunOffLoop(Exception):
    """An inline transform raised unexpectedly: run the object on the thread pool instead."""


def _deliberate(exc: Exception) -> bool:
    from aisetl.server import TransformError

    return isinstance(exc, TransformError)


_thread_loops = threading.local()


def run_in_thread_loop(awaitable: Awaitable[T]) -> T:
    """Run a coroutine to completion on this thread's own event loop."""
    loop = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
    return loop.run_until_complete(awaitable)


def _sync_iter(chunks: AsyncIterator[bytes], run_async: RunAsync) -> Iterator[bytes]:
    """Iterate an async generator from a worker thread."""
    try:
        while True:
            try:
                yield run_async(chunks.__anext__())
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            run_async(aclose())


def _limited(chunks: Iterator[bytes], limiter: TransformLimiter) -> Iterator[bytes]:
    """Run each step of a synchronous streaming transform in a transform slot."""
    done = object()
    try:
        while True:
            with limiter.slot():
                chunk = next(chunks, done)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _as_bytes(value: object, what: str) -> bytes:
    """A transform's result as bytes; text is sent as UTF-8, as the reference servers send it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise Failure(500, f"{what} returned {type(value).__name__}; it must return bytes")


class Flow:
    """Handles objects for one server instance in one process (thread-safe)."""

    def __init__(self, server: ETLServer, run_async: RunAsync | None = None) -> None:
        self._server = server
        self._settings = server.settings
        self._logger = server.logger
        self._run_async: RunAsync = run_async or run_in_thread_loop
        self._client = OutboundClient(server.settings)
        self._direct_put = DirectPut(self._client, server.settings, server.logger)
        self._content_type = server.get_mime_type()
        self._limiter = TransformLimiter(
            server.settings.transform_concurrency, server.settings.threads
        )
        self.streaming = server.use_streaming
        self.inline_policy = InlinePolicy()
        self._inline = threading.local()

    # --- entry points -----------------------------------------------------------------------

    def wants_body_stream(self, request: ObjectRequest) -> bool:
        """Whether the adapter should pass the request body as a reader (not as bytes)."""
        return self.streaming and not request.fqn

    def can_run_inline(self, request: ObjectRequest, body: bytes | BinaryIO | None) -> bool:
        """Whether :meth:`handle_inline` may handle this object on the caller's event loop.

        Only a quick synchronous buffered transform of bytes already in memory, with no
        network I/O: no hop to deliver to and no bytes to fetch from the target.
        """
        return (
            not self.streaming
            and not self._server.transform_is_async
            and not request.pipeline
            and not request.from_target
            and not request.fqn
            and (body is None or isinstance(body, bytes))
            and len(body or b"") <= self._settings.inline_max_bytes
            and self._settings.inline_max_bytes > 0
            and self.inline_policy.inline
        )

    def handle_inline(self, request: ObjectRequest, body: bytes | BinaryIO | None) -> Reply | None:
        """:meth:`handle` on an event loop thread (after :meth:`can_run_inline` said yes).

        ``None`` when the transform raised an unexpected exception there (some code cannot
        run on an event loop, e.g. ``asyncio.run``): the caller then runs :meth:`handle` on
        its thread pool, as it would have without inline execution, and inline execution
        stays off for a while.
        """
        self._inline.active = True
        try:
            return self.handle(request, body)
        except _RunOffLoop:
            self.inline_policy.hold()
            return None
        finally:
            self._inline.active = False

    async def handle_async(
        self, request: ObjectRequest, body: bytes | BinaryIO | None, io: LoopIO
    ) -> Reply | None:
        """:meth:`handle` on an event loop: network I/O on the loop, blocking work on ``io``'s pool.

        Covers synchronous buffered transforms whose peers are plain HTTP: the hpull GET from
        the target and the direct put run on the loop's client, a file is read and a slow
        transform runs on the pool, a quick one inline. ``None`` when the object needs the
        blocking path (streaming or async transforms, TLS peers): run :meth:`handle` on the
        pool then. Same decisions, same answers, same error messages as :meth:`handle`.
        """
        if self.streaming or self._server.transform_is_async or not _is_bytes_or_none(body):
            return None
        try:
            hop, rest = parse_pipeline(request.pipeline)
        except InvalidPipelineError as exc:
            return self.failure_reply(request.path, Failure(400, f"Invalid pipeline header: {exc}"))
        if hop and not io.reaches(hop):
            return None
        try:
            source = self._source(request, body)
            data: bytes | str
            if isinstance(source, UpstreamSource):
                if not io.reaches(source.target_url):
                    return None
                data = await self._fetch(io, source)
            elif isinstance(source, FileSource):
                read = source.check if self._settings.direct_fqn else source.load
                data = read() if _small_file(source.path) else await io.run(read)
            else:
                data = source.load()
            result = await self._transform_async(io, data, request)
            if not hop:
                return self._content(result)
            return await self._direct_put.deliver_async(
                io, hop, rest, request.path, request.etl_args, result
            )
        except Failure as failure:
            return self.failure_reply(request.path, failure)

    async def _fetch(self, io: LoopIO, source: UpstreamSource) -> bytes:
        url = upstream_url(source.target_url, source.path)
        try:
            response = await io.request("GET", url)
        except TransportFailed as exc:
            if exc.after_headers:
                raise upstream_read_failed(str(exc)) from exc
            raise upstream_unreachable(url, str(exc)) from exc
        if response.status >= 400:
            raise upstream_refused(response.status, response.body)
        return response.body

    async def _transform_async(
        self, io: LoopIO, data: bytes | str, request: ObjectRequest
    ) -> bytes:
        quick = (
            self.inline_policy.inline
            and self._settings.inline_max_bytes > 0
            and len(data) <= self._settings.inline_max_bytes
            and isinstance(data, bytes)
        )
        if quick:
            self._inline.active = True
            try:
                return self._transform(data, request)
            except _RunOffLoop:
                self.inline_policy.hold()
            finally:
                self._inline.active = False
        return await io.run(self._transform, data, request)

    def handle(self, request: ObjectRequest, body: bytes | BinaryIO | None = None) -> Reply:
        """Transform one object and decide the answer; never raises for a bad request."""
        try:
            return self._handle(request, body)
        except Failure as failure:
            return self.failure_reply(request.path, failure)

    def parse_ws(self, control: bytes | str) -> ObjectRequest:
        """Decode a ws control message; raises :class:`Failure` (400) when it is malformed."""
        try:
            return ObjectRequest.from_ws(parse_ws_control(control))
        except ValueError as exc:
            raise Failure(400, f"Invalid WebSocket control message: {exc}") from None

    def ws_message(self, reply: Reply, path: str) -> WsMessage:
        """Render a reply as the one WebSocket message a task gets (PROTOCOL.md §7.4)."""
        if reply.status == 204:
            return WsMessage(reply.headers.get(HEADER_DIRECT_PUT_LENGTH, "0"))
        if reply.status < 300:
            if reply.stream is None:
                return WsMessage(reply.body)
            try:
                return WsMessage(b"".join(reply.stream))
            except Failure as failure:
                reply = self.failure_reply(path, failure)
        return WsMessage(reply.body.decode("utf-8", "replace"), failed=True)

    def method_not_allowed(self, path: str, method: str) -> Reply:
        """405 for a method the protocol does not use on object paths."""
        failure = Failure(405, f"Method {method} is not supported: send PUT (hpush) or GET (hpull)")
        reply = self.failure_reply(path, failure)
        reply.headers["Allow"] = "GET, PUT"
        return reply

    def failure_reply(self, path: str, failure: Failure) -> Reply:
        """The one error format of every server and transport: message, then the object."""
        message = failure_text(failure.message, path)
        if failure.status >= 500:
            self._logger.error("%d %s", failure.status, message)
        else:
            self._logger.warning("%d %s", failure.status, message)
        headers = {"Content-Type": TEXT_PLAIN, **failure.headers}
        return Reply(failure.status, headers, message.encode("utf-8", "replace"))

    # --- the steps ---------------------------------------------------------------------------

    def _handle(self, request: ObjectRequest, body: bytes | BinaryIO | None) -> Reply:
        try:
            hop, rest = parse_pipeline(request.pipeline)
        except InvalidPipelineError as exc:
            raise Failure(400, f"Invalid pipeline header: {exc}") from None
        source = self._source(request, body)
        if self.streaming:
            return self._handle_stream(request, source, hop, rest)
        data: bytes | str
        if self._settings.direct_fqn and isinstance(source, FileSource):
            data = source.check()
        else:
            data = source.load()
        result = self._transform(data, request)
        if not hop:
            return self._content(result)
        return self._direct_put.deliver(
            hop, rest, request.path, request.etl_args, lambda: result, replayable=True
        )

    def _source(self, request: ObjectRequest, body: bytes | BinaryIO | None) -> Source:
        if request.fqn:
            path = sanitize_fqn(request.fqn)
            if not fqn_allowed(path, self._settings.fqn_allow):
                raise Failure(
                    400, f"etl_fqn {path!r} is outside the folders allowed by AISETL_FQN_ALLOW"
                )
            return FileSource(path)
        if request.from_target:
            return UpstreamSource(self._client, self._settings.target_url, request.path)
        if body is None:
            return BytesSource(b"")
        if isinstance(body, bytes):
            return BytesSource(body)
        return StreamSource(body)

    def _transform(self, data: bytes | str, request: ObjectRequest) -> bytes:
        server = self._server
        try:
            if server.transform_is_async:
                result = self._run_async(server.transform(data, request.path, request.etl_args))  # type: ignore[arg-type]
            else:
                inline = getattr(self._inline, "active", False)
                # On an event loop a slot must never be waited for: the loop would stop.
                with contextlib.nullcontext() if inline else self._limiter.slot():
                    clock = _CallClock()
                    try:
                        result = server.transform(data, request.path, request.etl_args)
                    finally:
                        self.inline_policy.record(clock.seconds(), inline, clock.waited())
        except (Failure, ClientGone):
            raise
        except Exception as exc:
            if getattr(self._inline, "active", False) and not _deliberate(exc):
                raise _RunOffLoop from exc
            raise self._transform_failure(exc, request) from exc
        return _as_bytes(result, "transform()")

    def _transform_failure(self, exc: Exception, request: ObjectRequest) -> Failure:
        from aisetl.server import TransformError

        if isinstance(exc, TransformError):
            return Failure(exc.status, exc.message)
        self._logger.exception("transform of %r raised", request.path)
        return Failure(500, f"Transform failed: {type(exc).__name__}: {exc}")

    def _open_chunks(self, source: Source, request: ObjectRequest) -> Iterator[bytes]:
        """Open the source now (so a missing file is a 404) and stream the transform's output."""
        return self._chunks(source.open(), request)

    def _chunks(self, reader: BinaryIO, request: ObjectRequest) -> Iterator[bytes]:
        server = self._server
        try:
            output: Iterable[bytes] | AsyncIterator[bytes] = server.transform_stream(
                reader, request.path, request.etl_args
            )
            if server.stream_is_async:
                chunks = _sync_iter(output, self._run_async)  # type: ignore[arg-type]
            else:
                chunks = _limited(iter(output), self._limiter)  # type: ignore[arg-type]
            for chunk in chunks:
                if chunk:
                    yield _as_bytes(chunk, "transform_stream()")
        except (Failure, ClientGone):
            raise
        except Exception as exc:
            raise self._transform_failure(exc, request) from exc
        finally:
            reader.close()

    def _handle_stream(self, request: ObjectRequest, source: Source, hop: str, rest: str) -> Reply:
        if hop:
            return self._direct_put.deliver(
                hop,
                rest,
                request.path,
                request.etl_args,
                lambda: self._open_chunks(source, request),
                replayable=source.replayable,
                relay_stream=True,
            )
        chunks = self._open_chunks(source, request)
        first = next(chunks, b"")
        if not first:
            return self._content(b"")
        return Reply(200, {"Content-Type": self._content_type}, stream=_prepend(first, chunks))

    def _content(self, data: bytes) -> Reply:
        headers = {"Content-Type": self._content_type}
        if not data:
            headers[HEADER_EMPTY_RESULT] = "true"
        return Reply(200, headers, data)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()
