"""When a quick synchronous transform may run on an event loop thread (and how we know).

Handing an object to a thread pool and back costs more than a quick transform itself, so an
event-loop server may run quick ones inline. :class:`InlinePolicy` learns whether a transform
is quick; :class:`CallClock` times a call the way the policy needs.
"""

from __future__ import annotations

import time

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]


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


def _voluntary_switches() -> int:
    """Times this thread gave up the CPU to wait (Linux; 0 elsewhere)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw if _RUSAGE_THREAD else 0


_RUSAGE_THREAD = resource is not None and hasattr(resource, "RUSAGE_THREAD")


class CallClock:
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

    def stop(self, quick: float = 0.0) -> tuple[float, bool]:
        """The call's duration as the policy should see it, and whether the thread gave up the
        CPU to wait during it (Linux only), read once at the call's end.

        A call of at most ``quick`` seconds of wall time is quick however it spent them: its
        wall time is returned without reading the thread's clocks (two system calls fewer).
        """
        wall = time.perf_counter() - self._wall
        if wall <= quick:
            return wall, False
        waited = _RUSAGE_THREAD and _voluntary_switches() != self._switches
        if not _RUSAGE_THREAD or waited:
            return wall, waited
        return min(wall, time.thread_time() - self._cpu), False
