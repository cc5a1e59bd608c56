"""LightQueue behaves as asyncio.Queue does in what it offers: each scenario runs on both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aisetl.light_queue import LightQueue

Factory = Callable[[int], Any]
QUEUES = pytest.mark.parametrize("make", [asyncio.Queue, LightQueue], ids=["asyncio", "light"])


def run(scenario: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=10))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@QUEUES
def test_first_in_first_out_with_waiting_readers(make: Factory) -> None:
    async def scenario() -> list[Any]:
        queue = make(0)
        got: list[Any] = []

        async def reader(name: str) -> None:
            got.append((name, await queue.get()))

        readers = [asyncio.ensure_future(reader(n)) for n in "abc"]
        await settle()
        for item in (1, 2, 3):
            queue.put_nowait(item)
        await asyncio.gather(*readers)
        queue.put_nowait(4)
        queue.put_nowait(5)
        return [got, queue.qsize(), await queue.get(), queue.empty(), await queue.get()]

    expected = [[("a", 1), ("b", 2), ("c", 3)], 2, 4, False, 5]
    assert run(scenario) == expected


@QUEUES
def test_a_full_queue_holds_back_put_until_a_get(make: Factory) -> None:
    async def scenario() -> list[Any]:
        queue = make(2)
        await queue.put("a")
        await queue.put("b")
        with pytest.raises(asyncio.QueueFull):
            queue.put_nowait("c")
        late = asyncio.ensure_future(queue.put("c"))
        await settle()
        blocked = not late.done()
        first = await queue.get()
        await settle()
        return [queue.full(), blocked, late.done(), first, await queue.get(), await queue.get()]

    assert run(scenario) == [True, True, True, "a", "b", "c"]


@QUEUES
def test_a_reader_cancelled_after_its_wake_up_passes_it_on(make: Factory) -> None:
    async def scenario() -> list[Any]:
        queue = make(0)
        first = asyncio.ensure_future(queue.get())
        second = asyncio.ensure_future(queue.get())
        await settle()
        queue.put_nowait("only")  # wakes the first reader...
        first.cancel()  # ...which is cancelled before it runs
        await settle()
        return [first.cancelled(), second.done() and second.result()]

    assert run(scenario) == [True, "only"]


@QUEUES
def test_a_cancelled_reader_takes_nothing(make: Factory) -> None:
    async def scenario() -> list[Any]:
        queue = make(0)
        gone = asyncio.ensure_future(queue.get())
        await settle()
        gone.cancel()
        await settle()
        queue.put_nowait("kept")
        return [gone.cancelled(), queue.qsize(), await queue.get()]

    assert run(scenario) == [True, 1, "kept"]


@QUEUES
def test_a_writer_cancelled_after_its_wake_up_passes_it_on(make: Factory) -> None:
    async def scenario() -> list[Any]:
        queue = make(1)
        queue.put_nowait("held")
        first = asyncio.ensure_future(queue.put("first"))
        second = asyncio.ensure_future(queue.put("second"))
        await settle()
        taken = queue.get_nowait() if hasattr(queue, "get_nowait") else await queue.get()
        first.cancel()
        await settle()
        return [taken, first.cancelled(), second.done(), await queue.get()]

    assert run(scenario) == ["held", True, True, "second"]


def test_awaited_says_whether_a_reader_waits_for_the_next_item() -> None:
    async def scenario() -> list[Any]:
        queue: LightQueue[int] = LightQueue()
        seen = [queue.awaited()]  # nobody reads yet
        reader = asyncio.ensure_future(queue.get())
        await settle()
        seen.append(queue.awaited())  # a reader waits
        queue.put_nowait(1)
        seen.append(queue.awaited())  # woken, its item not taken yet
        await reader
        seen.append(queue.awaited())
        cancelled = asyncio.ensure_future(queue.get())
        await settle()
        cancelled.cancel()
        await settle()
        seen.append(queue.awaited())  # the reader that waited was cancelled
        return seen

    assert run(scenario) == [False, True, False, False, False]
