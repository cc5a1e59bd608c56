"""Per-object counts kept in process memory and written to the shared metric files in batches.

Each value prometheus_client keeps for several worker processes lives in a memory-mapped file
and takes a lock to write; an object's end touches about ten of them, which cost a small
object more CPU than the rest of serving it. A :class:`Tally` adds them up in plain memory
instead, under one lock, and :meth:`Tally.flush` writes the sums: every
:data:`FLUSH_INTERVAL` seconds from a thread of its own, before this process answers a scrape,
and when a worker stops.

Objects leave ``aisetl_objects_in_flight`` in the flush that writes their counts, after them:
a scrape that finds no object in flight has every count. A gauge whose value is a reading (the
bytes reserved now, the ws tasks queued) is read at each flush (:meth:`Tally.sample`) instead
of being written at each change.
"""

from __future__ import annotations

import atexit
import bisect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds between two writes of what was counted (how stale another worker's counts can be).
FLUSH_INTERVAL = 0.2

_HISTOGRAM_PARTS = ("_buckets", "_sum", "_upper_bounds")


def _exact_buckets(child: Any) -> bool:
    """Whether a histogram's buckets can be written directly (prometheus_client's layout:
    one value per bucket, each observation counted in the first bucket it fits, and a sum)."""
    return all(hasattr(child, name) for name in _HISTOGRAM_PARTS) and len(child._buckets) == len(
        child._upper_bounds
    )


class _Observed:
    """What one histogram saw since the last flush."""

    __slots__ = ("buckets", "direct", "raw", "total")

    def __init__(self, child: Any) -> None:
        self.direct = _exact_buckets(child)
        self.buckets = [0] * len(child._buckets) if self.direct else []
        self.total = 0.0
        self.raw: list[float] = []  # when the buckets cannot be written directly


class Tally:
    """Counter increments, histogram observations and gauge readings, written by :meth:`flush`."""

    def __init__(self, in_flight: Any) -> None:
        self._in_flight = in_flight
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, _Observed] = {}
        self._samplers: dict[Any, Callable[[], float]] = {}
        self._finished = 0
        self._started = False
        self._exit_hooked = False

    # --- counting (any thread) ---------------------------------------------------------------

    def count(self, child: Any, amount: float = 1.0) -> None:
        """``child.inc(amount)``, later."""
        with self._lock:
            self._counts[child] = self._counts.get(child, 0.0) + amount
        if not self._started:
            self._start()

    def sample(self, gauge: Any, read: Callable[[], float]) -> None:
        """At each flush, ``gauge.set(read())`` (the last ``read`` given for a gauge counts)."""
        with self._lock:
            self._samplers[gauge] = read

    def finished(
        self,
        counters: tuple[Any, ...],
        amounts: tuple[float, ...],
        histograms: tuple[Any, ...],
        observations: tuple[float | None, ...],
    ) -> None:
        """One object's end: counter increments and histogram observations (zero and ``None``
        skipped), then its leaving the in-flight gauge, under one lock."""
        with self._lock:
            table = self._counts
            for child, amount in zip(counters, amounts, strict=True):
                if amount:
                    table[child] = table.get(child, 0.0) + amount
            for child, observed in zip(histograms, observations, strict=True):
                if observed is not None:
                    self._observe(child, observed)
            self._finished += 1
        if not self._started:
            self._start()

    def _observe(self, child: Any, amount: float) -> None:
        """``child.observe(amount)`` of a histogram, later (called with the lock held)."""
        seen = self._observed.get(child)
        if seen is None:
            seen = self._observed[child] = _Observed(child)
        if seen.direct:
            seen.buckets[bisect.bisect_left(child._upper_bounds, amount)] += 1
            seen.total += amount
        else:
            seen.raw.append(amount)

    # --- writing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what was counted since the last flush (counts first, the in-flight gauge last)."""
        with self._flushing:
            with self._lock:
                counts, self._counts = self._counts, {}
                observed, self._observed = self._observed, {}
                finished, self._finished = self._finished, 0
                samplers = list(self._samplers.items())
            for child, amount in counts.items():
                child.inc(amount)
            for child, seen in observed.items():
                for amount in seen.raw:
                    child.observe(amount)
                if seen.total:
                    child._sum.inc(seen.total)
                for index, hits in enumerate(seen.buckets):
                    if hits:
                        child._buckets[index].inc(hits)
            for gauge, read in samplers:
                gauge.set(read())
            if finished:
                self._in_flight.dec(finished)

    def _start(self) -> None:
        """Start this process's flushing thread (again in a forked child, which has none)."""
        with self._flushing:
            if self._started:
                return
            thread = threading.Thread(target=self._flush_often, name="aisetl-metrics", daemon=True)
            thread.start()
            self._started = True
        if not self._exit_hooked:
            self._exit_hooked = True
            atexit.register(self.flush)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._lock = threading.Lock()  # a lock another thread held at the fork stays held
        self._flushing = threading.Lock()
        self._started = False
        # What the parent had not written yet is the parent's to write, not the child's too.
        self._counts, self._observed = {}, {}
        self._finished = 0

    def _flush_often(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            self.flush()
