"""/health stays responsive while every transform slot computes (PROTOCOL.md §3).

A kubelet gives up on a probe after 5 s and takes the pod out of service; the reference
FastAPI and standard-library servers take longer than that under this load.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from aisetl.target import EmulatedTarget

from .conftest import FRAMEWORKS, REPO, TEST_ENV, serve_argv

KUBELET_PROBE_TIMEOUT = 5.0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_health_answers_while_cpu_heavy_transforms_saturate_the_server(
    tmp_path_factory: pytest.TempPathFactory, framework: str
) -> None:
    with EmulatedTarget(tmp_path_factory.mktemp("load"), obj_timeout=120) as target:
        etl = target.launch(
            f"{framework}-cpu", serve_argv("tests.transformers:CpuHeavy", framework),
            env=TEST_ENV, cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        bucket = target.bucket("b")
        bucket.put("o", b"x" * 1024)
        stop = time.monotonic() + 4.0
        errors: list[object] = []

        def load() -> None:
            while time.monotonic() < stop:
                result = target.hpush(etl, bucket, "o", etl_args="1000")  # ~40 ms of Python
                if result.error is not None:
                    errors.append(result.error)

        workers = [threading.Thread(target=load) for _ in range(24)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        probes = 0
        while time.monotonic() < stop - 0.5:
            with urllib.request.urlopen(
                etl.url() + "/health", timeout=KUBELET_PROBE_TIMEOUT
            ) as response:
                assert response.status == 200 and response.read() == b"Running"
            probes += 1
            time.sleep(0.1)
        for worker in workers:
            worker.join(60)
        assert errors == []
        assert probes >= 3
