"""Handing work from an event loop to threads and back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from aisetl.handoff import Handoff


def test_results_exceptions_and_threads() -> None:
    async def main() -> None:
        handoff = Handoff(asyncio.get_running_loop(), threads=4)
        loop_thread = threading.get_ident()

        def work(value: int) -> tuple[int, bool]:
            if value == 13:
                raise ValueError("thirteen")
            time.sleep(0.001)
            return value * 2, threading.get_ident() != loop_thread

        futures = [handoff.run(work, value) for value in range(40)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for value, result in enumerate(results):
            if value == 13:
                assert isinstance(result, ValueError) and str(result) == "thirteen"
            else:
                assert result == (value * 2, True)  # computed off the loop
        assert handoff.busy == 0
        assert 1 <= handoff._threads <= 4
        handoff.shutdown()

    asyncio.run(main())


def test_a_cancelled_waiter_does_not_break_delivery() -> None:
    async def main() -> None:
        handoff = Handoff(asyncio.get_running_loop(), threads=2)
        slow = handoff.run(time.sleep, 0.05)
        slow.cancel()
        assert await handoff.run(sum, [1, 2, 3]) == 6
        await asyncio.sleep(0.1)
        assert handoff.busy == 0
        with pytest.raises(asyncio.CancelledError):
            await slow
        handoff.shutdown()

    asyncio.run(main())


def test_work_handed_over_at_once_gets_a_thread_each() -> None:
    """Idle threads serve one piece of work each: a burst starts threads for the rest."""

    async def main() -> None:
        handoff = Handoff(asyncio.get_running_loop(), threads=64)
        await handoff.run(sum, [1])  # one thread, idle from now on
        barrier = threading.Barrier(16, timeout=10)
        results = await asyncio.gather(*(handoff.run(barrier.wait) for _ in range(16)))
        assert sorted(results) == list(range(16))  # all 16 waited at the barrier together
        handoff.shutdown()

    asyncio.run(main())
