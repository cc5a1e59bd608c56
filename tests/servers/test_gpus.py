"""AISETL_GPUS: worker i sees only GPU i mod N, from before its server is built, in every
framework. Checked by what each worker process saw in ``__init__`` and sees in ``transform``
(no GPU is needed: the variable is what a CUDA library reads)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from aisetl.target import ETL, EmulatedTarget

from .conftest import FRAMEWORKS, REPO, TEST_ENV, serve_argv

SPEC = "tests.transformers:ShowGpu"
BUILT = re.compile(r"built in pid (\d+) seeing CUDA_VISIBLE_DEVICES=(\S+)")


def start(target: EmulatedTarget, name: str, framework: str, workers: int, **env: str) -> ETL:
    argv = [*serve_argv(SPEC, framework), "--workers", str(workers)]
    return target.launch(
        name, argv, comm="hpush", env={**TEST_ENV, **env}, cwd=str(REPO), init_timeout=60
    )


def built(etl: ETL, count: int) -> dict[int, str]:
    """pid -> CUDA_VISIBLE_DEVICES of each built server, once ``count`` have logged it."""
    deadline = time.monotonic() + 30
    while True:
        seen = {int(pid): gpu for pid, gpu in BUILT.findall(etl.logs())}
        if len(seen) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def answers(target: EmulatedTarget, etl: ETL, count: int = 8) -> list[tuple[int, str, str]]:
    bucket = target.bucket("gpus")
    bucket.put("o", b"x")
    found = []
    for _ in range(count):
        result = target.hpush(etl, bucket, "o")
        assert result.content is not None, result
        pid, at_init, now = result.content.decode().split("|")
        found.append((int(pid), at_init, now))
    return found


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_worker_sees_its_own_gpu(target: EmulatedTarget, framework: str) -> None:
    etl = start(target, f"gpus-{framework}", framework, 4, AISETL_GPUS="0,1,2")
    seen = built(etl, 4)
    assert sorted(seen.values()) == ["0", "0", "1", "2"], etl.logs()[-3000:]  # i mod 3
    assert etl.processes[0].pid not in seen  # built in the workers, not before the fork
    for pid, at_init, now in answers(target, etl):
        assert seen[pid] == at_init == now  # set before __init__, and it stays
    target.stop(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_auto_spreads_the_visible_gpus(target: EmulatedTarget, framework: str) -> None:
    etl = start(
        target, f"gpus-auto-{framework}", framework, 2,
        AISETL_GPUS="auto", CUDA_VISIBLE_DEVICES="5,7",
    )  # fmt: skip
    assert sorted(built(etl, 2).values()) == ["5", "7"], etl.logs()[-3000:]
    target.stop(etl)


def test_without_the_setting_the_server_is_built_once(target: EmulatedTarget) -> None:
    etl = start(target, "gpus-unset", "fastapi", 2, CUDA_VISIBLE_DEVICES="3")
    time.sleep(1.0)  # workers that would build their own have had time to log it
    seen = built(etl, 1)
    assert list(seen.values()) == ["3"]  # untouched, and one build shared by the workers
    assert {at_init for _, at_init, _ in answers(target, etl)} == {"3"}
    target.stop(etl)


def test_a_bad_value_stops_the_server_with_a_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aisetl", "serve", SPEC, "--port", "0", "--workers", "2"],
        env={**TEST_ENV, "AIS_TARGET_URL": "http://127.0.0.1:9", "AISETL_GPUS": "0,,1"},
        cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert "AISETL_GPUS='0,,1'" in done.stderr and "GPU indices" in done.stderr
