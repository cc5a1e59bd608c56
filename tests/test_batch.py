"""The batcher on its own: batches from threads and loops, outcomes per item, the limits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from aisetl.batch import Batcher, BatchStats, Item, WrongResultCount


def upper_all(items: list[Item]) -> Sequence[object]:
    return [
        item.data.upper() if item.etl_args != "bad" else ValueError(item.path) for item in items
    ]  # type: ignore[union-attr]


def test_threads_and_a_loop_share_batches_and_get_their_own_outcome() -> None:
    seen: list[int] = []

    def run(items: list[Item]) -> Sequence[object]:
        seen.append(len(items))
        return upper_all(items)

    batcher = Batcher(run, max_size=8, max_delay=30.0)  # runs when full
    outcomes: dict[str, object] = {}

    def from_thread(i: int) -> None:
        try:
            outcomes[f"t{i}"] = batcher.run(Item(b"t%d" % i, f"t{i}", "bad" if i == 0 else ""))
        except Exception as exc:  # pragma: no cover - a failure is reported below
            outcomes[f"t{i}"] = exc

    threads = [threading.Thread(target=from_thread, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()

    async def from_loop() -> list[object]:
        return list(
            await asyncio.gather(*(batcher.run_async(Item(b"l%d" % i, f"l{i}")) for i in range(4)))
        )

    from_the_loop = asyncio.run(from_loop())
    for thread in threads:
        thread.join(10)
    assert seen == [8]
    assert from_the_loop == [b"L0", b"L1", b"L2", b"L3"]
    assert outcomes["t1"] == b"T1" and outcomes["t3"] == b"T3"
    assert isinstance(outcomes["t0"], ValueError) and str(outcomes["t0"]) == "t0"


def test_wrong_length_and_a_raising_batch_fail_every_item() -> None:
    short = Batcher(lambda items: [b"x"] * (len(items) - 1), max_size=1, max_delay=0)
    with pytest.raises(WrongResultCount, match=r"returned 0 result\(s\) for a batch of 1"):
        short.run(Item(b"a", "a"))

    def boom(items: list[Item]) -> Sequence[object]:
        raise RuntimeError("boom")

    raising = Batcher(boom, max_size=4, max_delay=0)
    with pytest.raises(RuntimeError, match="boom"):
        raising.run(Item(b"a", "a"))


def test_sizes_are_counted_and_written(tmp_path: object) -> None:
    import json
    from pathlib import Path

    folder = Path(str(tmp_path))
    stats = BatchStats(str(folder))
    batcher = Batcher(upper_all, max_size=2, max_delay=30.0, stats=stats)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(batcher.run(Item(b"a", "p"))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [b"A"] * 4
    assert stats.sizes == {2: 2} and stats.batches == 2 and stats.objects == 4
    stats.flush()
    (written,) = folder.glob("*.json")
    assert json.loads(written.read_text()) == {"batches": 2, "objects": 4, "sizes": {"2": 2}}


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(upper_all, max_size=0, max_delay=0.1)
