"""Graceful shutdown: on SIGTERM a server stops accepting, finishes what is in flight, exits."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from aisetl.target import EmulatedTarget

from ..transformers import upper
from .conftest import FRAMEWORKS, REPO, TEST_ENV, payload, serve_argv


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sigterm_during_a_slow_transform_delivers_the_whole_object(
    tmp_path_factory: pytest.TempPathFactory, framework: str, workers: int
) -> None:
    with EmulatedTarget(tmp_path_factory.mktemp("shutdown")) as target:
        etl = target.launch(
            f"{framework}-shutdown",
            [*serve_argv("tests.transformers:Upper", framework), "--workers", str(workers)],
            env={**TEST_ENV, "AISETL_GRACE_PERIOD": "10"},
            cwd=str(REPO),
            init_timeout=60,
        )
        process = etl.processes[0]
        bucket = target.bucket("b")
        data = payload(200_000, seed=9)
        bucket.put("slow.bin", data)
        results = []
        sender = threading.Thread(
            target=lambda: results.append(
                target.hpush(etl, bucket, "slow.bin", etl_args="sleep=1.5")
            )
        )
        sender.start()
        time.sleep(0.5)  # the transform is running now
        process.proc.send_signal(signal.SIGTERM)
        sender.join(20)
        assert results and results[0].error is None, (results, etl.logs()[-3000:])
        assert results[0].content == upper(data)
        deadline = time.monotonic() + 15
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process.alive, "the server did not exit within its grace period"
        assert process.proc.returncode == 0, etl.logs()[-3000:]
        with pytest.raises(OSError):
            socket.create_connection((process.host, process.port), timeout=1).close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_grace_period_bounds_the_wait(
    tmp_path_factory: pytest.TempPathFactory, framework: str
) -> None:
    """A transform longer than the grace period does not keep the server alive forever."""
    with EmulatedTarget(tmp_path_factory.mktemp("grace"), obj_timeout=30) as target:
        etl = target.launch(
            f"{framework}-grace",
            serve_argv("tests.transformers:Upper", framework),
            env={**TEST_ENV, "AISETL_GRACE_PERIOD": "1"},
            cwd=str(REPO),
            init_timeout=60,
        )
        process = etl.processes[0]
        bucket = target.bucket("b")
        bucket.put("very-slow", b"x")
        sender = threading.Thread(
            target=lambda: target.hpush(etl, bucket, "very-slow", etl_args="sleep=20")
        )
        sender.start()
        time.sleep(0.5)
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        deadline = started + 12
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process.alive, "the server outlived its grace period by far"
        sender.join(25)
