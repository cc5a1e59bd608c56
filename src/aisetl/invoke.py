"""Calling the user's transform: slots, inline timing, async bridging and the error mapping.

:class:`Invoker` is the one place a server calls ``transform`` or ``transform_stream``. It
runs synchronous transforms in a slot of the :class:`~aisetl.limiter.TransformLimiter`, times
them for the :class:`~aisetl.inline.InlinePolicy`, runs ``async`` ones on the given loop, and
turns what a transform raises into a :class:`~aisetl.sources.Failure` (a ``TransformError``
keeps its status and message).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from aisetl.inline import CallClock, InlinePolicy
from aisetl.limiter import TransformLimiter
from aisetl.sources import ClientGone, Failure

if TYPE_CHECKING:
    from aisetl.edge import ObjectRequest
    from aisetl.server import ETLServer

T = TypeVar("T")
RunAsync = Callable[[Awaitable[Any]], Any]
#: Wraps an ``async`` transform's awaitable so it is cancelled when its object is given up.
Bound = Callable[[Awaitable[Any]], Awaitable[Any]]


class RunOffLoop(Exception):
    """An inline transform raised unexpectedly: run the object on the thread pool instead."""


_thread_loops = threading.local()


def run_in_thread_loop(awaitable: Awaitable[T]) -> T:
    """Run a coroutine to completion on this thread's own event loop."""
    loop = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
    return loop.run_until_complete(awaitable)


def as_bytes(value: object, what: str) -> bytes:
    """A transform's result as bytes; text is sent as UTF-8, as the reference servers send it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise Failure(500, f"{what} returned {type(value).__name__}; it must return bytes")


class Invoker:
    """Calls one server's transform methods (thread-safe)."""

    def __init__(self, server: ETLServer, run_async: RunAsync | None = None) -> None:
        self._server = server
        self._logger = server.logger
        self._run_async: RunAsync = run_async or run_in_thread_loop
        settings = server.settings
        self._limiter = TransformLimiter(settings.transform_concurrency, settings.threads)
        self.policy = InlinePolicy()
        self._inline = threading.local()

    @property
    def is_async(self) -> bool:
        """Whether ``transform`` is ``async def``."""
        return self._server.transform_is_async

    def transform(
        self, data: bytes | str, request: ObjectRequest, bound: Bound | None = None
    ) -> bytes:
        """Run the buffered transform on ``data``; raise :class:`Failure` when it fails."""
        server = self._server
        inline = getattr(self._inline, "active", False)
        try:
            if server.transform_is_async:
                coro: Any = server.transform(data, request.path, request.etl_args)
                result = self._run_async(coro if bound is None else bound(coro))
            else:
                # On an event loop a slot must never be waited for: the loop would stop.
                with contextlib.nullcontext() if inline else self._limiter.slot():
                    clock = CallClock()
                    try:
                        result = server.transform(data, request.path, request.etl_args)
                    finally:
                        self.policy.record(clock.seconds(), inline, clock.waited())
        except (Failure, ClientGone):
            raise
        except Exception as exc:
            if inline and not _deliberate(exc):
                raise RunOffLoop from exc
            raise self.failure(exc, request) from exc
        return as_bytes(result, "transform()")

    def transform_inline(self, data: bytes, request: ObjectRequest) -> bytes | None:
        """:meth:`transform` on an event loop thread; ``None``: run it on the pool instead.

        ``None`` when the transform raised an unexpected exception there (some code cannot run
        on an event loop, e.g. ``asyncio.run``); inline execution then stays off for a while.
        """
        self._inline.active = True
        try:
            return self.transform(data, request)
        except RunOffLoop:
            self.policy.hold()
            return None
        finally:
            self._inline.active = False

    def may_inline(self, size: int, limit: int) -> bool:
        """Whether a synchronous transform of ``size`` bytes may run on the loop now."""
        return not self.is_async and limit > 0 and size <= limit and self.policy.inline

    def stream(
        self, reader: BinaryIO, request: ObjectRequest, bound: Bound | None = None
    ) -> Iterator[bytes]:
        """Run the streaming transform over ``reader``: its non-empty chunks, as bytes."""
        server = self._server
        try:
            output: Iterable[bytes] | AsyncIterator[bytes] = server.transform_stream(
                reader, request.path, request.etl_args
            )
            if server.stream_is_async:
                chunks = _sync_iter(output, self._run_async, bound)  # type: ignore[arg-type]
            else:
                chunks = _limited(iter(output), self._limiter)  # type: ignore[arg-type]
            for chunk in chunks:
                if chunk:
                    yield as_bytes(chunk, "transform_stream()")
        except (Failure, ClientGone):
            raise
        except Exception as exc:
            raise self.failure(exc, request) from exc
        finally:
            reader.close()

    def failure(self, exc: Exception, request: ObjectRequest) -> Failure:
        """The answer for an exception a transform raised."""
        from aisetl.server import TransformError

        if isinstance(exc, TransformError):
            return Failure(exc.status, exc.message)
        # Logged with its traceback (the failure's cause) when the object ends.
        return Failure(500, f"Transform failed: {type(exc).__name__}: {exc}")


def _deliberate(exc: Exception) -> bool:
    from aisetl.server import TransformError

    return isinstance(exc, TransformError)


def _sync_iter(
    chunks: AsyncIterator[bytes], run_async: RunAsync, bound: Bound | None = None
) -> Iterator[bytes]:
    """Iterate an async generator from a worker thread (each step within ``bound``)."""
    try:
        while True:
            try:
                step: Any = chunks.__anext__()
                yield run_async(step if bound is None else bound(step))
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
