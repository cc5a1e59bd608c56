"""Dynamic batching: the objects that arrive together at one worker process, run as batches.

A server that defines ``transform_batch`` gets a :class:`Batcher`. Every buffered object the
process receives, whatever the communication type (hpush, hpull, ws, FQN), is handed to
:meth:`Batcher.run` (from a request thread) or :meth:`Batcher.run_async` (from an event
loop) as an :class:`Item`. Runner threads (one by default: one model, one batch at a time)
take up to ``max_size`` waiting items as soon as that many wait, or ``max_delay`` seconds
after the oldest could have started (its arrival, or the end of the runner's previous batch,
whichever is later), and call the batch function with them. A lone object is never held
longer than ``max_delay``; under load, the objects that arrived while a batch ran are joined
by those that arrive in the next ``max_delay`` (the answers just sent bring new objects from a
target at once), so batches stay full instead of splitting into alternating halves.

Each caller gets its own item's outcome: the value at its position, an exception the batch
function returned for it, the exception the whole batch raised, or
:class:`WrongResultCount` when the batch function returned a list of the wrong length.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["BatchStats", "Batcher", "Item", "WrongResultCount"]


@dataclass(frozen=True)
class Item:
    """One object of a batch.

    ``data`` is the object's bytes, or its file path (``str``) when ``ETL_DIRECT_FQN`` is set
    and the target passed a local file; ``path`` is the object path; ``etl_args`` the
    per-request argument string ("" when none).
    """

    data: bytes | str
    path: str
    etl_args: str = ""


Outcome = Any  # a batch function's result for one item: bytes, str or an Exception
BatchFunction = Callable[[list[Item]], Sequence[Outcome]]


class WrongResultCount(Exception):
    """The batch function returned a number of results other than one per item."""


class _Waiting:
    """An item and whoever waits for its outcome (a thread, or a future on a loop)."""

    __slots__ = ("arrived", "done", "future", "item", "loop", "outcome", "raised")

    def __init__(
        self,
        item: Item,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[Outcome] | None = None,
    ) -> None:
        self.item = item
        self.arrived = time.monotonic()
        self.loop = loop
        self.future = future
        self.done = threading.Event() if future is None else None
        self.outcome: Outcome = None
        self.raised = False


class Batcher:
    """Collects items from any thread or event loop into batches (thread-safe)."""

    def __init__(
        self,
        run_batch: BatchFunction,
        *,
        max_size: int,
        max_delay: float,
        concurrency: int = 1,
        logger: logging.Logger | None = None,
        stats: BatchStats | None = None,
    ) -> None:
        if max_size < 1 or max_delay < 0 or concurrency < 1:
            raise ValueError("max_size and concurrency must be at least 1, max_delay >= 0")
        self._run_batch = run_batch
        self.max_size = max_size
        self.max_delay = max_delay
        self._concurrency = concurrency
        self._logger = logger or logging.getLogger(__name__)
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._cond = threading.Condition()
        self._runners: list[threading.Thread] = []
        self.stats = stats or BatchStats()

    # --- callers -----------------------------------------------------------------------------

    def run(self, item: Item) -> Outcome:
        """The outcome for ``item`` (blocks this thread; raises what the batch raised)."""
        waiting = _Waiting(item)
        self._put(waiting)
        assert waiting.done is not None
        waiting.done.wait()
        if waiting.raised:
            raise waiting.outcome
        return waiting.outcome

    async def run_async(self, item: Item) -> Outcome:
        """:meth:`run` for a caller on an event loop (the loop is never blocked)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._put(_Waiting(item, loop, future))
        return await future

    def _put(self, waiting: _Waiting) -> None:
        with self._cond:
            if len(self._runners) < self._concurrency:
                self._start_runners()
            self._queue.append(waiting)
            # Runners only need waking to start a batch's clock, or when one is full.
            if len(self._queue) == 1 or len(self._queue) >= self.max_size:
                self._cond.notify_all()

    def _start_runners(self) -> None:
        while len(self._runners) < self._concurrency:
            thread = threading.Thread(
                target=self._runner, name=f"aisetl-batch-{len(self._runners)}", daemon=True
            )
            self._runners.append(thread)
            thread.start()

    # --- runners -----------------------------------------------------------------------------

    def _runner(self) -> None:
        free_since = 0.0
        while True:
            batch = self._next_batch(free_since)
            started = time.perf_counter()
            outcomes = self._execute(batch)
            self.stats.record(len(batch), time.perf_counter() - started)
            _deliver(batch, outcomes)
            free_since = time.monotonic()

    def _next_batch(self, free_since: float) -> list[_Waiting]:
        """Wait for a full batch, or for the delay to pass; take the batch."""
        with self._cond:
            while True:
                if not self._queue:
                    self.stats.flush()  # the burst is over: the counts are complete
                while not self._queue:
                    self._cond.wait()
                deadline = max(self._queue[0].arrived, free_since) + self.max_delay
                while self._queue and len(self._queue) < self.max_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._queue:  # (another runner may have taken them meanwhile)
                    count = min(len(self._queue), self.max_size)
                    return [self._queue.popleft() for _ in range(count)]

    def _execute(self, batch: list[_Waiting]) -> list[tuple[bool, Outcome]]:
        """Run the batch function; ``(raised, outcome)`` for each item, in order."""
        try:
            results = self._run_batch([waiting.item for waiting in batch])
            results = list(results)
        except Exception as exc:
            self._logger.exception("transform_batch() raised for a batch of %d", len(batch))
            return [(True, exc)] * len(batch)
        if len(results) != len(batch):
            error = WrongResultCount(
                f"transform_batch() returned {len(results)} result(s) for a batch of "
                f"{len(batch)} object(s): it must return one result (bytes, or an exception "
                "for that object) per item, in order"
            )
            self._logger.error("%s", error)
            return [(True, error)] * len(batch)
        return [(False, result) for result in results]


def _deliver(batch: list[_Waiting], outcomes: list[tuple[bool, Outcome]]) -> None:
    """Hand each waiter its outcome: threads directly, each event loop once per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}
    for waiting, (raised, outcome) in zip(batch, outcomes, strict=True):
        waiting.raised, waiting.outcome = raised, outcome
        if waiting.done is not None:
            waiting.done.set()
        else:
            assert waiting.loop is not None
            by_loop.setdefault(waiting.loop, []).append(waiting)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, waiters)


def _settle(waiters: list[_Waiting]) -> None:
    for waiting in waiters:
        future = waiting.future
        assert future is not None
        if future.cancelled():
            continue
        if waiting.raised:
            future.set_exception(waiting.outcome)
        else:
            future.set_result(waiting.outcome)


class BatchStats:
    """Batch sizes seen by one process; written to a file when ``path`` is given.

    ``aisetl bench`` sets ``AISETL_BATCH_STATS`` to a folder and reads each worker's
    ``<pid>.json`` (``{"batches": n, "objects": n, "sizes": {"size": count}}``), written at
    most every ``flush_interval`` seconds while batches run, and whenever no object waits.
    """

    flush_interval = 0.2

    def __init__(self, folder: str | None = None) -> None:
        self.sizes: collections.Counter[int] = collections.Counter()
        self.seconds = 0.0
        self._folder = folder
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._dirty = False
        self._written = 0.0
        #: Called with (size, seconds) after each batch (e.g. for metrics).
        self.listeners: list[Callable[[int, float], None]] = []

    @classmethod
    def from_env(cls) -> BatchStats:
        """Statistics that go to ``$AISETL_BATCH_STATS/<pid>.json`` when that is set."""
        return cls(os.environ.get("AISETL_BATCH_STATS") or None)

    @property
    def batches(self) -> int:
        """Batches run so far."""
        return sum(self.sizes.values())

    @property
    def objects(self) -> int:
        """Objects in those batches."""
        return sum(size * count for size, count in self.sizes.items())

    def record(self, size: int, seconds: float) -> None:
        """Count one batch of ``size`` objects that took ``seconds``."""
        with self._lock:
            self.sizes[size] += 1
            self.seconds += seconds
            self._dirty = True
        for listener in self.listeners:
            listener(size, seconds)
        if self._folder is not None and time.monotonic() - self._written >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write the file now if anything changed (no-op without a folder)."""
        if self._folder is None:
            return
        with self._writing:  # one writer at a time; on return the file is up to date
            if not self._dirty:
                return
            with self._lock:
                snapshot = {
                    "batches": self.batches,
                    "objects": self.objects,
                    "sizes": {str(size): count for size, count in sorted(self.sizes.items())},
                }
                self._dirty = False
                self._written = time.monotonic()
            path = os.path.join(self._folder, f"{os.getpid()}.json")
            try:
                with open(path + ".tmp", "w") as file:
                    json.dump(snapshot, file)
                os.replace(path + ".tmp", path)
            except OSError as exc:
                logging.getLogger(__name__).warning("cannot write batch statistics: %s", exc)
