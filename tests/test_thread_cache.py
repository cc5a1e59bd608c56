"""Threads started without waiting, and kept for the next piece of work."""

from __future__ import annotations

import threading
import time

from aisetl.thread_cache import Spawner, ThreadCache
from tests.forked import in_forked_child


def _wait_until(condition: object, seconds: float = 5.0) -> bool:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_spawner_start_returns_before_the_thread_runs() -> None:
    spawner = Spawner("test")
    gate = threading.Event()
    ran = threading.Event()

    def target() -> None:
        gate.wait(5)
        ran.set()

    spawner.start(target, "test-thread")
    assert not ran.is_set()
    gate.set()
    assert ran.wait(5)


def test_every_item_is_served_once_and_threads_are_reused() -> None:
    served: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def work(item: int) -> None:
        with lock:
            served.append(item)
            names.add(threading.current_thread().name + str(threading.get_ident()))

    cache: ThreadCache[int] = ThreadCache(work, name="test-cache")
    for item in range(20):  # one at a time: each finds the last one's thread idle
        cache.submit(item)
        assert _wait_until(lambda: cache.idle == 1)
    assert served == list(range(20))
    assert len(names) == 1


def test_a_burst_gets_a_thread_per_item_and_no_item_waits_for_another() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    done: list[int] = []

    def work(item: int) -> None:
        started.release()
        release.wait(10)  # each holds its thread until all have started
        done.append(item)

    cache: ThreadCache[int] = ThreadCache(work, name="test-burst")
    for item in range(50):
        cache.submit(item)
    for _ in range(50):
        assert started.acquire(timeout=10), "an item waited for another one's thread"
    release.set()
    assert _wait_until(lambda: len(done) == 50)
    assert sorted(done) == list(range(50))
    assert _wait_until(lambda: cache.idle == 50)


def test_idle_threads_end_and_later_items_still_get_one() -> None:
    served: list[int] = []
    cache: ThreadCache[int] = ThreadCache(served.append, name="test-idle", idle_seconds=0.05)
    before = threading.active_count()
    for item in range(5):
        cache.submit(item)
    assert _wait_until(lambda: len(served) == 5)
    assert _wait_until(lambda: cache.idle == 0 and threading.active_count() <= before + 1)
    cache.submit(99)  # no idle thread is left: a new one is started
    assert _wait_until(lambda: 99 in served)


def test_a_forked_child_starts_threads_of_its_own() -> None:
    spawner = Spawner("test-fork")
    ran = threading.Event()
    spawner.start(ran.set, "parent")
    assert ran.wait(5)

    def child() -> bool:
        in_child = threading.Event()
        spawner.start(in_child.set, "child")  # the parent's spawner thread is not here
        return in_child.wait(5)

    assert in_forked_child(child)
