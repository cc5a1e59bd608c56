"""One object's life, from its admission to its answer's last byte.

A :class:`Watch` holds what the server decides about an object beyond its bytes: its
deadline and whether its client is still there (:mod:`aisetl.deadline`), the memory it holds
(:mod:`aisetl.inflight`), and, when it ends, its one count in the metrics and its one log
line (a failure at warning or error; a success only with ``AISETL_ACCESS_LOG=true``).

An adapter opens one per admitted object (``with flow.watch(request) as watch:``), reserves
memory before reading a buffered body (:meth:`Watch.reserve`), hands it to the flow, and
passes the reply it sends through :meth:`Watch.reply`. The flow runs the transform through it
(:meth:`Watch.transform`, :meth:`Watch.stream`) and checks it before a direct put.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import os
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from aisetl import metrics, pod
from aisetl.config import Settings
from aisetl.deadline import Bounds, Deadline, DeadlineExceeded, Probe
from aisetl.inflight import RESERVE_FACTOR, InflightBytes, default_bound
from aisetl.logs import traceback_of
from aisetl.reply import Reply, failure_text
from aisetl.sources import READ_CHUNK, ClientGone, Failure

if TYPE_CHECKING:
    from aisetl.edge import ObjectRequest
    from aisetl.invoke import Invoker

T = TypeVar("T")

_count_lock = threading.Lock()
_open = 0


def in_flight() -> int:
    """Objects this process has admitted and not answered yet."""
    return _open


def _opened(delta: int) -> None:
    global _open
    with _count_lock:
        _open += delta


#: The ``comm`` label of a request refused at the edge, by method.
_REFUSED_COMM = {"GET": "hpull", "PUT": "hpush", "POST": "download"}


class Watcher:
    """Opens the watches of one process's flow; holds what they share."""

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger
        self.observer = metrics.observer(settings)
        bound = settings.max_inflight_bytes
        self.memory = InflightBytes(
            default_bound(pod.workers()) if bound is None else bound, self.observer
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def watch(
        self, comm: str, path: str, gone: Probe | None = None, *, logs_failures: bool = True
    ) -> Watch:
        """Start watching one object (``logs_failures=False``: its failure is logged elsewhere)."""
        return Watch(self, comm, path, gone, logs_failures)

    def watch_reserved(self, comm: str, path: str, length: int | None) -> Watch | None:
        """:meth:`watch`, with the room :meth:`Watch.reserve` takes for a body of ``length``
        bytes already taken; ``None``, with nothing opened, when that room needs a wait."""
        size = length * RESERVE_FACTOR if length else 0
        if size and not self.memory.try_acquire(size):
            return None
        watch = Watch(self, comm, path, None, True)
        if size:
            watch._reserved = size
        return watch

    def detached(self, path: str) -> Watch:
        """A watch that bounds the work but counts and logs nothing (a caller without one)."""
        return Watch(self, "", path, None, False, counted=False)

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """Threads that run synchronous transforms under a deadline (created on first use)."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        self.settings.threads, thread_name_prefix="aisetl-bounded"
                    )
        return self._executor

    def refused(self, method: str, path: str, failure: Failure) -> None:
        """A request refused at the edge: counted and logged once."""
        comm = _REFUSED_COMM.get(method, "other")
        self.observer.refused(comm, failure.status)
        message = failure_text(failure.message, path)
        level = logging.ERROR if failure.status >= 500 else logging.WARNING
        self.logger.log(
            level,
            "%s %s refused: %d %s",
            comm,
            method,
            failure.status,
            message,
            extra={"object": path, "comm": comm, "status": failure.status, "error": message},
        )


class Watch:
    """One object: bounds, reserved memory, bytes, time, and how it ended."""

    # What most objects never change is a class default, set on the instance only when it
    # changes (an object builds one watch; each assignment saved counts on small objects).
    bytes_in = 0
    bytes_out = 0
    status = 0
    _reserved = 0
    _transform_seconds: float | None = None
    _failure: Failure | None = None
    _reason = ""
    _gone = False
    _overran = False
    _abandoned = False
    _running = 0  # guarded transform calls still running (an abandoned one, at the end)
    _done = False

    def __init__(
        self,
        watcher: Watcher,
        comm: str,
        path: str,
        gone: Probe | None,
        logs_failures: bool,
        *,
        counted: bool = True,
    ) -> None:
        self._watcher = watcher
        self.comm = comm
        self.path = path
        self.started = time.monotonic()
        seconds = watcher.settings.obj_timeout
        self.bounds = Bounds(Deadline(seconds, self.started) if seconds > 0 else None, gone)
        self._logs_failures = logs_failures
        self._lock = threading.Lock()
        self._counted = counted
        if counted:
            _opened(1)
            watcher.observer.object_started()

    # --- bounds ------------------------------------------------------------------------------

    @property
    def deadline(self) -> Deadline | None:
        """The object's deadline, if ``AISETL_OBJ_TIMEOUT`` is set."""
        return self.bounds.deadline

    def check(self, doing: str) -> None:
        """Raise 504 when the deadline has passed (or :class:`ClientGone` when the client left)."""
        if self.bounds.active:
            self.bounds.check(doing)

    # --- memory ------------------------------------------------------------------------------

    def _wait_time(self) -> float | None:
        deadline = self.bounds.deadline
        return None if deadline is None else deadline.remaining()

    def _no_room(self) -> DeadlineExceeded:
        assert self.bounds.deadline is not None
        return DeadlineExceeded(
            self.bounds.deadline.seconds,
            "waiting for memory to read its body (AISETL_MAX_INFLIGHT_BYTES)",
        )

    def reserve(self, length: int | None) -> None:
        """Before reading a buffered body of ``length`` bytes: wait for room for it and a result."""
        if not length:
            return
        size = length * RESERVE_FACTOR
        if not self._watcher.memory.acquire(size, self._wait_time()):
            raise self._no_room()
        self._reserved += size

    async def reserve_async(self, length: int | None) -> None:
        """:meth:`reserve` on an event loop."""
        if not length:
            return
        size = length * RESERVE_FACTOR
        if not await self._watcher.memory.acquire_async(size, self._wait_time()):
            raise self._no_room()
        self._reserved += size

    def reserve_file(self, path: str) -> None:
        """Before reading a local file (FQN) into memory: :meth:`reserve` for its size."""
        try:
            size = os.stat(path).st_size
        except (OSError, ValueError):
            return  # reading it fails at once, with the right answer
        self.reserve(size)

    async def reserve_file_async(self, path: str) -> None:
        """:meth:`reserve_file` on an event loop."""
        try:
            size = os.stat(path).st_size
        except (OSError, ValueError):
            return
        await self.reserve_async(size)

    def _release_memory(self) -> None:
        with self._lock:
            reserved, self._reserved = self._reserved, 0
        if reserved:
            self._watcher.memory.release(reserved)

    def holds(self, size: int) -> None:
        """The object now holds exactly ``size`` bytes (its body and its result)."""
        delta = size - self._reserved
        if delta > 0:
            self._watcher.memory.add(delta)
        elif delta < 0:
            self._watcher.memory.release(-delta)
        self._reserved = size

    # --- running the transform ---------------------------------------------------------------

    def _timed(self, func: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return func(*args)
        finally:
            self._add_time(time.perf_counter() - started)

    def _add_time(self, seconds: float) -> None:
        self._transform_seconds = (self._transform_seconds or 0.0) + seconds

    def _guarded(self, func: Callable[..., T]) -> Callable[..., T]:
        """``func`` timed, and reported if it ends after its object was given up."""

        def run(*args: Any) -> T:
            started = time.perf_counter()
            with self._lock:
                self._running += 1
            try:
                return func(*args)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self._running -= 1
                    release = self._done and self._running == 0
                if release:  # the object ended while it ran: what it held is free only now
                    self._release_memory()
                if self._abandoned:
                    self._watcher.logger.info(
                        "an abandoned transform of %r (%s) finished after %.3f s; its result "
                        "was dropped",
                        self.path,
                        self.comm,
                        elapsed,
                        extra={"object": self.path, "comm": self.comm, "duration": elapsed},
                    )
                else:
                    self._add_time(elapsed)

        return run

    def _abandon(self, _future: object, _why: str) -> None:
        if not self._abandoned:
            self._abandoned = True
            self._overran = True
            self._watcher.observer.overrun()

    def _call(self, doing: str, func: Callable[..., T], *args: Any) -> T:
        if not self.bounds.active:
            return self._timed(func, *args)
        return self.bounds.call(
            self._watcher.executor(), self._abandon, doing, self._guarded(func), *args
        )

    def transform(self, invoker: Invoker, data: bytes | str, request: ObjectRequest) -> bytes:
        """The buffered transform of ``data``, within the object's bounds."""
        if isinstance(data, bytes):
            self.bytes_in += len(data)
        if invoker.is_async:  # cancelled on the loop it runs on when the object is given up
            bound = self.bounds.bound if self.bounds.active else None
            result = self._timed(invoker.transform, data, request, bound)
        else:
            result = self._call("running the transform", invoker.transform, data, request)
        self.bytes_out += len(result)
        return result

    def inline(self, func: Callable[..., bytes | None], data: bytes, request: Any) -> bytes | None:
        """A quick transform run on the event loop (``None``: it must run on the pool)."""
        self.bytes_in += len(data)  # counted when the transform fails, too
        result = self._timed(func, data, request)
        if result is None:  # it runs again on the pool, where it is counted
            self.bytes_in -= len(data)
        else:
            self.bytes_out += len(result)
        return result

    async def transform_on(
        self,
        run: Callable[..., Awaitable[bytes]],
        invoker: Invoker,
        data: bytes | str,
        request: ObjectRequest,
    ) -> bytes:
        """The buffered transform on an event loop's thread pool (``run``), within the bounds."""
        if isinstance(data, bytes):
            self.bytes_in += len(data)
        if not self.bounds.active:
            result = await run(self._guarded(invoker.transform), data, request)
        else:
            result = await self.bounds.wait(
                run(self._guarded(invoker.transform), data, request),
                self._abandon,
                "running the transform",
            )
        self.bytes_out += len(result)
        return result

    async def awaited(self, invoker: Invoker, data: bytes | str, request: ObjectRequest) -> bytes:
        """An ``async`` (or batched) transform awaited on this loop; cancelled past the bounds."""
        if isinstance(data, bytes):
            self.bytes_in += len(data)
        started = time.perf_counter()
        try:
            work = invoker.transform_async(data, request)
            if self.bounds.active:
                result = await self.bounds.wait(work, None, "running the async transform")
            else:
                result = await work
        finally:
            self._add_time(time.perf_counter() - started)
        self.bytes_out += len(result)
        return result

    def stream(self, chunks: Iterator[bytes], bound_steps: bool = True) -> Iterator[bytes]:
        """A streaming transform's output, counted; each step within the bounds.

        ``bound_steps=False``: the steps bound themselves (an ``async`` transform, cancelled
        on its loop).
        """
        try:
            while True:
                if bound_steps:
                    chunk = self._call("streaming the transform's output", next, chunks, None)
                else:
                    chunk = self._timed(next, chunks, None)
                if chunk is None:
                    return
                self.bytes_out += len(chunk)
                yield chunk
        except Failure as failure:
            self._failure = failure  # if it fails after the first chunk, this is the outcome
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None and not self._abandoned:
                close()

    def reading(self, reader: BinaryIO) -> BinaryIO:
        """The reader a streaming transform gets, its bytes counted as they are read."""
        if isinstance(reader, io.BytesIO):
            self.bytes_in += reader.getbuffer().nbytes
            return reader
        if isinstance(reader, io.BufferedReader) and isinstance(reader.raw, io.FileIO):
            with contextlib.suppress(OSError):
                self.bytes_in += os.fstat(reader.fileno()).st_size
            return reader
        return io.BufferedReader(_Counted(reader, self), READ_CHUNK)

    # --- the answer --------------------------------------------------------------------------

    def reply(self, reply: Reply) -> Reply:
        """The reply about to be sent for this object (returned as is)."""
        self.status = reply.status
        if reply.status >= 300:
            self._failure = reply.failure
            self._reason = reply.body[:2000].decode("utf-8", "replace")
        return reply

    def gone(self) -> None:
        """The target hung up before the answer was out."""
        self._gone = True

    def cut_short(self) -> None:
        """The answer stopped before its end: the client went away, unless a failure did it."""
        if self._failure is None and self.status < 300:
            self._gone = True

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, (ClientGone, OSError, asyncio.CancelledError)):
            self._gone = True
        elif exc is not None and self.status == 0 and self._failure is None:
            self._failure = Failure(500, f"Internal error: {type(exc).__name__}: {exc}")
        self.finish()

    def outcome(self) -> str:
        """How the object ended (a :mod:`aisetl.metrics` outcome)."""
        failure = self._failure
        if isinstance(failure, DeadlineExceeded):
            return metrics.TIMEOUT
        if self._gone:
            return metrics.GONE
        if failure is not None or self.status >= 300:
            return metrics.FAILED
        if self.status == 0:
            return metrics.GONE
        return metrics.DELIVERED if self.status == 204 else metrics.OK

    def finish(self) -> None:
        """The object is over: release its memory, count it, log it (once; later calls: no-op)."""
        if self._done:
            return
        with self._lock:
            self._done = True
            running = self._running
        if not running:  # else the abandoned transform still holds the object's bytes
            self._release_memory()
        if not self._counted:
            return
        _opened(-1)
        seconds = time.monotonic() - self.started
        outcome = self.outcome()
        failure = self._failure
        status = failure.status if failure is not None else self.status
        if outcome == metrics.GONE and failure is None:
            status = 0
        self._watcher.observer.object_finished(
            self.comm,
            outcome,
            status,
            seconds,
            self._transform_seconds,
            self.bytes_in,
            self.bytes_out,
        )
        if outcome in (metrics.OK, metrics.DELIVERED) and failure is None:
            if self._watcher.settings.access_log:
                what = (
                    f"{status} in {seconds:.6f} s, {self.bytes_in} bytes in, "
                    f"{self.bytes_out} bytes out"
                )
                self._log(logging.INFO, what, status, seconds, "")
            return
        if self._logs_failures or outcome == metrics.GONE:
            self._log_failure(outcome, status, seconds, failure)
        if failure is not None:  # its traceback's frames may hold the object's bytes
            _release_frames(failure)

    def _log_failure(
        self, outcome: str, status: int, seconds: float, failure: Failure | None
    ) -> None:
        if outcome == metrics.GONE and failure is None:
            reason = "the client went away (the target hung up) before the answer was out"
            self._log(logging.WARNING, f"failed: {reason}", 0, seconds, reason)
            return
        reason = self._reason or (
            failure_text(failure.message, self.path) if failure is not None else ""
        )
        if failure is not None and self.status < 300:
            reason = f"{reason}; the reply was cut mid-stream so the target sees a read error"
        if self._overran:
            reason = (
                f"{reason}; the synchronous transform is still running (Python cannot "
                "interrupt it): its result will be dropped"
            )
        if outcome == metrics.GONE:
            reason = f"{reason}; the client went away (the target hung up), nothing was sent"
        level = logging.ERROR if status >= 500 else logging.WARNING
        self._log(level, f"failed ({status}): {reason}", status, seconds, reason, failure)

    def _log(
        self,
        level: int,
        what: str,
        status: int,
        seconds: float,
        error: str,
        failure: Failure | None = None,
    ) -> None:
        trace = traceback_of(failure)
        self._watcher.logger.log(
            level,
            "%s %s %s",
            self.comm,
            self.path,
            what,
            exc_info=(type(trace), trace, trace.__traceback__) if trace is not None else None,
            extra={
                "object": self.path,
                "comm": self.comm,
                "status": status,
                "duration": round(seconds, 6),
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "error": error or None,
            },
        )


def _release_frames(failure: BaseException) -> None:
    """Drop the locals of the frames a failure's tracebacks hold (logged already)."""
    seen: BaseException | None = failure
    for _ in range(8):  # the failure, its cause, and theirs
        if seen is None:
            return
        if seen.__traceback__ is not None:
            traceback.clear_frames(seen.__traceback__)
        seen = seen.__cause__ or seen.__context__


class _Counted(io.RawIOBase):
    """A reader whose bytes are added to a watch's input as they are read."""

    def __init__(self, reader: BinaryIO, watch: Watch) -> None:
        self._reader = reader
        self._watch = watch

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._reader.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self._watch.bytes_in += size
        return size

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()
