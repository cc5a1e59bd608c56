"""The loop thread that carries the threaded servers' direct puts (:mod:`aisetl.hop_loop`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from aisetl import per_process as per_process_module
from aisetl.aio import LoopIO
from aisetl.config import Settings
from aisetl.edge import ObjectRequest
from aisetl.flow import Flow
from aisetl.hop_loop import HopLoop
from aisetl.loader import bind_framework
from aisetl.per_process import PerProcess
from aisetl.sources import Failure
from aisetl.target import EmulatedTarget
from aisetl.target.wire import destination_hop
from tests.transformers import Upper

SETTINGS = Settings(target_url="http://127.0.0.1:1")


async def _where(io: LoopIO) -> tuple[str, bool]:
    return threading.current_thread().name, isinstance(io, LoopIO)


async def _refuse(io: LoopIO) -> None:
    raise Failure(404, "no such object")


def test_work_runs_on_the_loop_thread_and_its_result_comes_back() -> None:
    loop = HopLoop(SETTINGS)
    assert loop.run(_where) == ("aisetl-hop-loop", True)
    assert loop.run(_where) == ("aisetl-hop-loop", True)  # the same loop, still running


def test_an_exception_in_the_work_reaches_the_caller() -> None:
    with pytest.raises(Failure, match="no such object"):
        HopLoop(SETTINGS).run(_refuse)


def test_a_forked_worker_starts_a_loop_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = HopLoop(SETTINGS)
    loop.run(_where)
    parents = loop._started.get()[0]
    child = os.getpid() + 1
    monkeypatch.setattr(per_process_module.os, "getpid", lambda: child)
    assert loop.run(_where) == ("aisetl-hop-loop", True)
    assert loop._started.get()[0] is not parents  # the parent's loop thread is not in the child


def test_one_value_per_process_even_when_threads_ask_at_once() -> None:
    built: list[int] = []

    def build() -> int:
        time.sleep(0.05)  # long enough for every thread to ask meanwhile
        built.append(1)
        return len(built)

    value = PerProcess(build)
    threads = [threading.Thread(target=value.get) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert value.get() == 1 and len(built) == 1


@pytest.fixture
def target() -> Iterator[EmulatedTarget]:
    with EmulatedTarget() as tgt:
        yield tgt


@pytest.mark.parametrize("on_loop", [True, False], ids=["loop-thread", "blocking-client"])
def test_a_threaded_servers_direct_put_lands_the_same_either_way(
    target: EmulatedTarget, on_loop: bool
) -> None:
    """The loop thread's client and the blocking one deliver the same object, and answer the
    target the same (204, with the length the hop took)."""
    os.environ.setdefault("AIS_TARGET_URL", "http://127.0.0.1:1")
    server = bind_framework(Upper, "http")()
    server.settings = Settings(target_url=target.url)
    flow = Flow(server, loop_direct_puts=on_loop)
    etl = target.cluster.attach(f"hop-{str(on_loop).lower()}", "http://127.0.0.1:9")
    obj = target.bucket("out").object_name(f"put-{on_loop}")
    hop = destination_hop(etl.target_url(), obj.uname)
    reply = flow.handle(ObjectRequest(path="b/o", pipeline=hop), b"abc" * 1000)
    assert reply.status == 204, reply.body
    assert target.bucket("out").get(f"put-{on_loop}") == b"ABC" * 1000
    assert (flow._hop_loop is not None) == on_loop
    if on_loop:  # the loop thread was started for it
        assert flow._hop_loop is not None and flow._hop_loop._started._value is not None
