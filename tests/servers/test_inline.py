"""Quick transforms may run on the FastAPI server's event loop: answers never change for it."""

from __future__ import annotations

import sys
import time

import pytest

from aisetl import inline
from aisetl.inline import CallClock, InlinePolicy
from aisetl.target import EmulatedTarget

from .conftest import Launcher, health_ok

HOSTILE = "tests.servers.loop_servers:LoopHostile"


def test_policy_turns_inline_after_a_streak_of_quick_calls() -> None:
    policy = InlinePolicy(limit=0.001, streak=4)
    for _ in range(3):
        policy.record(0.0001, inline=False)
    assert not policy.inline
    policy.record(0.0001, inline=False)
    assert policy.inline


def test_policy_slow_call_resets_and_an_inline_one_holds_off() -> None:
    policy = InlinePolicy(limit=0.001, streak=2)
    policy.record(0.0001, inline=False)
    policy.record(0.0001, inline=False)
    policy.record(0.5, inline=False)  # slow on a thread: the streak starts again
    assert not policy.inline
    policy.record(0.0001, inline=False)
    policy.record(0.0001, inline=False)
    assert policy.inline
    policy.record(0.5, inline=True)  # slow on the loop: held off even after a new streak
    policy.record(0.0001, inline=False)
    policy.record(0.0001, inline=False)
    assert not policy.inline


def test_policy_a_slow_call_that_waited_ends_inline_execution_for_good() -> None:
    policy = InlinePolicy(limit=0.001, streak=2)
    policy.record(0.0001, inline=False)
    policy.record(0.0001, inline=False)
    assert policy.inline
    policy.record(0.2, inline=True, waited=True)  # blocked on I/O: it must never run inline
    for _ in range(1000):
        policy.record(0.0001, inline=False)
    assert not policy.inline


def test_clock_reads_no_thread_clock_for_a_quick_call(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = CallClock()

    def unwanted() -> int:
        raise AssertionError("a quick call read the thread's clocks")

    monkeypatch.setattr(inline, "_voluntary_switches", unwanted)
    monkeypatch.setattr(inline.time, "thread_time", unwanted)
    seconds, waited = clock.stop(quick=1.0)
    assert 0 <= seconds <= 1.0 and not waited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the switch count is Linux's")
def test_clock_tells_a_wait_past_the_quick_limit() -> None:
    clock = CallClock()
    time.sleep(0.01)
    seconds, waited = clock.stop(quick=0.001)
    assert waited and seconds >= 0.01
    outcomes = []
    for _ in range(5):  # (another thread taking the interpreter lock is a wait: try again)
        clock = CallClock()
        deadline = time.perf_counter() + 0.003
        while time.perf_counter() < deadline:  # on the CPU the whole time: not a wait
            pass
        outcomes.append(clock.stop(quick=0.001))
        if not outcomes[-1][1]:
            break
    seconds, waited = outcomes[-1]
    assert not waited and seconds > 0.001, outcomes


@pytest.mark.parametrize("comm", ["hpush", "ws"])
def test_transform_that_cannot_run_on_the_loop_still_answers(
    target: EmulatedTarget, launch: Launcher, comm: str
) -> None:
    etl = launch("inline-hostile", HOSTILE, "fastapi")
    bucket = target.bucket("inline")
    for i in range(120):  # well past the streak that would move quick transforms inline
        name = f"{comm}-{i}.txt"
        bucket.put(name, f"object {i}".encode())
        result = target.transform(etl, bucket, name, comm=comm, fqn=False)
        assert result.error is None, (i, result.error, etl.logs()[-2000:])
        assert result.content == f"OBJECT {i}".encode()
    assert "Transform failed" not in etl.logs()
    assert health_ok(etl)


def test_deliberate_errors_are_answered_once(target: EmulatedTarget, launch: Launcher) -> None:
    etl = launch("inline-hostile", HOSTILE, "fastapi")
    bucket = target.bucket("inline")
    bucket.put("warm.txt", b"warm")
    for _ in range(40):
        assert target.hpush(etl, bucket, "warm.txt", fqn=False).ok
    result = target.hpush(etl, bucket, "warm.txt", fqn=False, etl_args="refuse")
    assert result.status == 422 and result.error is not None
    assert "refused as asked" in result.error.msg


@pytest.mark.parametrize("comm", ["hpush", "ws"])
def test_quick_transforms_move_to_the_loop(
    target: EmulatedTarget, launch: Launcher, comm: str
) -> None:
    etl = launch(f"inline-where-{comm}", "tests.servers.loop_servers:WhereAmI", "fastapi")
    bucket = target.bucket("inline")
    bucket.put("where.txt", b"x")
    answers = [target.transform(etl, bucket, "where.txt", comm=comm, fqn=False) for _ in range(80)]
    assert all(a.ok for a in answers)
    assert answers[0].content == b"thread" and answers[-1].content == b"loop"
    # hpull fetches the bytes on the loop's own client and FQN reads the file on a thread;
    # the quick transform then runs on the loop as well
    assert target.hpull(etl, bucket, "where.txt", fqn=False).content == b"loop"
    assert target.hpush(etl, bucket, "where.txt", fqn=True).content == b"loop"
