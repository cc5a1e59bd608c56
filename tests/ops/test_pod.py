"""Small operational must-haves: the open-file limit raised at start, and /health 503 while a
server drains after SIGTERM (so the kubelet stops routing to it before its socket closes)."""

from __future__ import annotations

import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from aisetl.target import Cluster, TransformResult

from ..servers.conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, serve_argv
from .conftest import get, scrape, value, wait_for

STEERED = "tests.ops.transformers:Steered"
#: The soft limit a container runtime might start us with (they default to 1024).
LOW_SOFT_LIMIT = 256
#: Runs ``python -m aisetl serve ARGS...`` with the soft open-file limit lowered first.
LOWER_THEN_SERVE = (
    "import os, resource, sys; "
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW_SOFT_LIMIT}, hard)); "
    "os.execv(sys.executable, [sys.executable, '-m', 'aisetl', *sys.argv[1:]])"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("pod"), time_scale=0.01) as c:
        yield c


def open_file_limits(pid: int) -> tuple[int, int]:
    """The soft and hard open-file limits of a process, from ``/proc``."""
    with open(f"/proc/{pid}/limits") as file:
        for line in file:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open-file limit listed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_open_file_limit_is_raised_to_the_hard_limit(cluster: Cluster, framework: str) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 2 * LOW_SOFT_LIMIT:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    serve = serve_argv(STEERED, framework)[3:]  # after "python -m aisetl"
    etl = cluster.launch(
        f"{framework}-nofile",
        [sys.executable, "-c", LOWER_THEN_SERVE, *serve, "--workers", "2"],
        env=TEST_ENV,
        cwd=str(REPO),
        init_timeout=60,
    )

    def pids() -> set[int]:
        return {
            int(dict(labels)["pid"])
            for (name, labels) in scrape(etl)
            if name == "process_max_fds" and "pid" in dict(labels)
        }

    # the supervisor (or gunicorn's arbiter) and two workers (gunicorn boots them in turn)
    wait_for(lambda: len(pids()) == 3, 20, "both workers")
    for pid in pids():
        assert open_file_limits(pid) == (hard, hard), pid
    # more connections at once than the old soft limit allowed, each answered
    server = etl.server()
    sockets = [
        socket.create_connection((server.host, server.port), timeout=30)
        for _ in range(LOW_SOFT_LIMIT + 100)
    ]
    try:
        for sock in sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in sockets:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "a connection was not served"
    finally:
        for sock in sockets:
            sock.close()
    assert health_ok(etl)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_health_is_503_while_draining(cluster: Cluster, framework: str, workers: int) -> None:
    etl = cluster.launch(
        f"{framework}-drain-{workers}",
        [*serve_argv(STEERED, framework), "--workers", str(workers)],
        env={**TEST_ENV, "AISETL_GRACE_PERIOD": "20"},
        cwd=str(REPO),
        init_timeout=60,
    )
    target = cluster.targets[0]
    bucket = target.bucket(f"drain-{framework}-{workers}")
    bucket.put("slow", b"finish me")
    results: list[TransformResult] = []
    sender = threading.Thread(
        target=lambda: results.append(target.hpush(etl, bucket, "slow", etl_args="sleep=3"))
    )
    sender.start()
    wait_for(lambda: value(scrape(etl), "aisetl_objects_in_flight") == 1, 10, "the object")
    process = etl.processes[0]
    process.proc.send_signal(signal.SIGTERM)
    answers: list[tuple[int, str]] = []

    def draining() -> bool:
        answers.append(get(etl.url() + "/health"))
        return answers[-1][0] == 503

    wait_for(draining, 5, "/health to answer 503")
    _, text = answers[-1]
    assert text.startswith("Draining after SIGTERM: finishing the objects in flight"), text
    sender.join(30)
    assert results and results[0].content == b"FINISH ME", results
    deadline = time.monotonic() + 20
    while process.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process.alive, "the server did not exit once its object was done"
    assert process.proc.returncode == 0, etl.logs()[-2000:]
    with pytest.raises(OSError):
        socket.create_connection((process.host, process.port), timeout=1).close()
