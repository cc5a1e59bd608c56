"""The transform limiter: fixed slots, and slots learned from CPU time."""

from __future__ import annotations

import os
import threading
import time

import pytest

from aisetl.limiter import (
    _SCHEDSTAT,
    CPU_BOUND_SLOTS,
    QUICK_STREAK,
    TransformLimiter,
    demand_clock,
)
from tests.forked import in_forked_child


def _run(limiter: TransformLimiter, work: object, threads: int = 8, rounds: int = 3) -> int:
    """Run ``work`` in ``threads`` threads under the limiter; return the peak concurrency."""
    active = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal active, peak
        for _ in range(rounds):
            with limiter.slot():
                with lock:
                    active += 1
                    peak = max(peak, active)
                work()  # type: ignore[operator]
                with lock:
                    active -= 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(30)
    return peak


def _spin() -> None:
    deadline = time.thread_time() + 0.01
    while time.thread_time() < deadline:
        pass


def test_fixed_slots_are_never_exceeded() -> None:
    limiter = TransformLimiter(fixed=3, ceiling=64)
    assert _run(limiter, lambda: time.sleep(0.01)) == 3
    assert limiter.limit == 3


def test_cpu_bound_transforms_get_few_slots() -> None:
    limiter = TransformLimiter(fixed=None, ceiling=64)
    assert limiter.limit == CPU_BOUND_SLOTS  # until calls show otherwise
    assert _run(limiter, _spin) <= CPU_BOUND_SLOTS
    assert limiter.limit == CPU_BOUND_SLOTS


def test_waiting_transforms_get_every_thread() -> None:
    limiter = TransformLimiter(fixed=None, ceiling=64)
    _run(limiter, lambda: time.sleep(0.02), threads=4, rounds=10)
    assert limiter.limit == 64
    assert _run(limiter, lambda: time.sleep(0.05), threads=12, rounds=1) > CPU_BOUND_SLOTS


def test_waiting_transforms_get_every_thread_in_their_first_round() -> None:
    """Calls that wait lift the limit while they run: no first round at two slots."""
    limiter = TransformLimiter(fixed=None, ceiling=64)
    assert _run(limiter, lambda: time.sleep(0.3), threads=16, rounds=1) == 16
    assert limiter.limit == 64


def test_long_cpu_bound_calls_keep_few_slots_while_others_wait() -> None:
    def spin() -> None:
        deadline = time.thread_time() + 0.1
        while time.thread_time() < deadline:
            pass

    limiter = TransformLimiter(fixed=None, ceiling=64)
    assert _run(limiter, spin, threads=6, rounds=1) <= CPU_BOUND_SLOTS
    assert limiter.limit == CPU_BOUND_SLOTS


def _quick_spin() -> None:
    deadline = time.thread_time() + 0.0002
    while time.thread_time() < deadline:
        pass


def test_after_quick_calls_long_cpu_bound_ones_still_get_few_slots() -> None:
    """Quick calls are timed by a cheaper clock; the slots stay what they were."""
    limiter = TransformLimiter(fixed=None, ceiling=64)
    _run(limiter, _quick_spin, threads=4, rounds=QUICK_STREAK)
    assert limiter.limit == CPU_BOUND_SLOTS

    def spin() -> None:
        deadline = time.thread_time() + 0.1
        while time.thread_time() < deadline:
            pass

    assert _run(limiter, spin, threads=6, rounds=1) <= CPU_BOUND_SLOTS
    assert limiter.limit == CPU_BOUND_SLOTS


def test_after_quick_calls_waiting_ones_get_every_thread_at_once() -> None:
    """The cheaper clock of quick calls can still be read by a waiting call's probe."""
    limiter = TransformLimiter(fixed=None, ceiling=64)
    _run(limiter, _quick_spin, threads=4, rounds=QUICK_STREAK)
    assert limiter.limit == CPU_BOUND_SLOTS
    assert _run(limiter, lambda: time.sleep(0.3), threads=16, rounds=1) == 16
    assert limiter.limit == 64


@pytest.mark.skipif(not _SCHEDSTAT or not hasattr(os, "fork"), reason="Linux schedstat only")
def test_the_demand_clock_reads_its_own_thread_after_a_fork() -> None:
    demand_clock()  # this thread's schedstat file is open now

    def child_sees_its_own_cpu() -> bool:  # its main thread is another thread than ours
        clock = demand_clock()
        start = clock()
        spin_until = time.perf_counter() + 0.2
        while time.perf_counter() < spin_until:
            pass
        return clock() - start > 0.1

    assert in_forked_child(child_sees_its_own_cpu), "the child's clock missed its 0.2 s of CPU"
