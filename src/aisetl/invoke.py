"""Calling the user's transform: slots, inline timing, async bridging, batches, error mapping.

:class:`Invoker` is the one place a server calls ``transform``, ``transform_stream`` or
``transform_batch``. It runs synchronous transforms in a slot of the
:class:`~aisetl.limiter.TransformLimiter`, times them for the
:class:`~aisetl.inline.InlinePolicy`, awaits ``async`` ones on an event loop (up to
``AISETL_ASYNC_CONCURRENCY`` at once: the server's own loop, or one loop thread per process
for the threaded servers), hands objects of a batching server to its
:class:`~aisetl.batch.Batcher`, and turns what a transform raises into a
:class:`~aisetl.sources.Failure` (a ``TransformError`` keeps its status and message).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from aisetl.batch import Batcher, BatchStats, Item, WrongResultCount
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


class LoopThread:
    """One event loop on a daemon thread of its own, started on first use (after any fork).

    The threaded servers run every ``async`` transform of a process on it, so they all share
    one loop (as they would on FastAPI): any number of them wait at once, and what a
    transform keeps across calls (a client session, say) stays on the loop it was made on.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if needed)."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=main, name="aisetl-async", daemon=True).start()
                ready.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run a coroutine on the loop; block this thread until it is done."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            awaitable,  # type: ignore[arg-type]
            self.loop(),
        )
        return future.result()


_process_loop = LoopThread()


def run_in_thread_loop(awaitable: Awaitable[T]) -> T:
    """Run a coroutine to completion on the process's async loop thread (:class:`LoopThread`)."""
    return _process_loop.run(awaitable)


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
        self._async_limit = settings.async_concurrency
        self._async_slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.batcher = _batcher(server, self._run_async) if server.batched else None

    @property
    def is_async(self) -> bool:
        """Whether ``transform`` is ``async def`` (and not fed batches)."""
        return self._server.transform_is_async and self.batcher is None

    async def transform_async(self, data: bytes | str, request: ObjectRequest) -> bytes:
        """The buffered transform on the running loop: ``async def`` ones, and batches.

        At most ``AISETL_ASYNC_CONCURRENCY`` async transforms are awaited at once; the rest
        wait their turn on the loop. Raises :class:`Failure` when the transform fails.
        """
        if self.batcher is not None:
            item = Item(data, request.path, request.etl_args)
            try:
                outcome = await self.batcher.run_async(item)
            except Exception as exc:
                raise self.batch_failure(exc, request) from exc
            return self._batch_result(outcome, request)
        server = self._server
        try:
            async with self._slots():
                result = await server.transform(data, request.path, request.etl_args)  # type: ignore[misc]
        except (Failure, ClientGone):
            raise
        except Exception as exc:
            raise self.failure(exc, request) from exc
        return as_bytes(result, "transform()")

    def _slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._async_slots
        if slots is None or slots[0] is not loop:
            slots = (loop, asyncio.Semaphore(self._async_limit))
            self._async_slots = slots
        return slots[1]

    def transform(
        self, data: bytes | str, request: ObjectRequest, bound: Bound | None = None
    ) -> bytes:
        """Run the buffered transform on ``data``; raise :class:`Failure` when it fails."""
        server = self._server
        if self.batcher is not None:
            try:
                outcome = self.batcher.run(Item(data, request.path, request.etl_args))
            except Exception as exc:
                raise self.batch_failure(exc, request) from exc
            return self._batch_result(outcome, request)
        if server.transform_is_async:
            try:
                coro: Any = self.transform_async(data, request)
                result = self._run_async(coro if bound is None else bound(coro))
            except (Failure, ClientGone):
                raise
            except Exception as exc:
                raise self.failure(exc, request) from exc
            return as_bytes(result, "transform()")
        with self._limiter.slot():
            return self._call_sync(data, request, inline=False)

    def transform_inline(self, data: bytes, request: ObjectRequest) -> bytes | None:
        """:meth:`transform` on an event loop thread; ``None``: run it on the pool instead.

        ``None`` when the transform raised an unexpected exception there (some code cannot run
        on an event loop, e.g. ``asyncio.run``); inline execution then stays off for a while.
        On an event loop a slot must never be waited for (the loop would stop), so none is.
        """
        try:
            return self._call_sync(data, request, inline=True)
        except RunOffLoop:
            self.policy.hold()
            return None

    def _call_sync(self, data: bytes | str, request: ObjectRequest, inline: bool) -> bytes:
        """The synchronous ``transform``, timed for the inline policy, its failure mapped."""
        clock = CallClock()
        try:
            result = self._server.transform(data, request.path, request.etl_args)
        except (Failure, ClientGone):
            raise
        except Exception as exc:
            if inline and not _deliberate(exc):
                raise RunOffLoop from exc
            raise self.failure(exc, request) from exc
        finally:
            seconds, waited = clock.stop(self.policy.limit)  # (quick: the policy's own limit)
            self.policy.record(seconds, inline, waited)
        return as_bytes(result, "transform()")

    def may_inline(self, size: int, limit: int) -> bool:
        """Whether a synchronous transform of ``size`` bytes may run on the loop now."""
        return (
            not self._server.transform_is_async
            and self.batcher is None
            and limit > 0
            and size <= limit
            and self.policy.inline
        )

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

    def batch_failure(self, exc: BaseException, request: ObjectRequest) -> Failure:
        """The answer for an object whose batch failed, or whose result is an exception."""
        from aisetl.server import TransformError

        if isinstance(exc, (Failure, ClientGone)):
            return exc  # type: ignore[return-value]
        if isinstance(exc, TransformError):
            return Failure(exc.status, exc.message)
        if isinstance(exc, WrongResultCount):
            return Failure(500, str(exc))
        self._logger.error("transform_batch() failed for %r: %s", request.path, exc)
        return Failure(500, f"Transform failed: {type(exc).__name__}: {exc}")

    def _batch_result(self, outcome: object, request: ObjectRequest) -> bytes:
        if isinstance(outcome, BaseException):
            raise self.batch_failure(outcome, request) from outcome
        if outcome is None:
            raise Failure(500, "transform_batch() returned None for this object")
        return as_bytes(outcome, "transform_batch()")


def _batcher(server: ETLServer, run_async: RunAsync) -> Batcher:
    """The batcher of a server that defines ``transform_batch`` (settings override the class)."""
    settings = server.settings
    batch_function: Callable[[list[Item]], Any] = server.transform_batch
    if server.batch_is_async:

        def batch_function(items: list[Item]) -> Any:
            return run_async(server.transform_batch(items))  # type: ignore[arg-type]

    return Batcher(
        batch_function,
        max_size=settings.max_batch_size or server.max_batch_size,
        max_delay=(
            settings.max_batch_delay
            if settings.max_batch_delay is not None
            else server.max_batch_delay
        ),
        concurrency=settings.batch_concurrency or server.batch_concurrency,
        logger=server.logger,
        stats=BatchStats.from_env(),
    )


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
