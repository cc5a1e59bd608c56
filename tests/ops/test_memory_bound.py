"""AISETL_MAX_INFLIGHT_BYTES: past the bound a new body waits unread (TCP pushes back on the
sender) instead of being read into memory; everything still comes back byte-exact.

The demonstration at scale (64 concurrent 64 MiB PUTs under a 1 GiB bound, with peak RSS) is
a benchmark: ``make memory-check``.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections.abc import Iterator

import pytest

from aisetl.target import ETL, Cluster, TransformResult

from ..servers.conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, payload, serve_argv
from .conftest import scrape, settled, value, wait_for

MIB = 1024 * 1024
BOUND = 2 * MIB  # one 1 MiB object fills it: it reserves its body and a result as large


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("memory"), time_scale=0.01) as c:
        yield c


def launch(cluster: Cluster, name: str, framework: str, **env: str) -> ETL:
    return cluster.launch(
        name,
        serve_argv("tests.ops.transformers:Steered", framework),
        env={**TEST_ENV, "AISETL_MAX_INFLIGHT_BYTES": str(BOUND), **env},
        cwd=str(REPO),
        init_timeout=60,
        obj_timeout=60,
    )


def in_background(
    cluster: Cluster, etl: ETL, name: str, data: bytes, args: str
) -> tuple[threading.Thread, list[TransformResult]]:
    """hpush the bytes of ``data`` (not its FQN) from a thread; its result lands in the list."""
    target = cluster.targets[0]
    bucket = target.bucket("held")
    bucket.put(name, data)
    results: list[TransformResult] = []
    thread = threading.Thread(
        target=lambda: results.append(target.hpush(etl, bucket, name, fqn=False, etl_args=args))
    )
    thread.start()
    return thread, results


def push_until_blocked(sock: socket.socket, body: memoryview, quiet: float) -> int:
    """Send as much of ``body`` as the connection takes until it stays full for ``quiet`` s."""
    sock.setblocking(False)
    sent = 0
    while sent < len(body):
        _, writable, _ = select.select([], [sock], [], quiet)
        if not writable:
            break
        try:
            sent += sock.send(body[sent : sent + 256 * 1024])
        except BlockingIOError:
            continue
    sock.setblocking(True)
    return sent


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_concurrent_bodies_past_the_bound_come_back_byte_exact(
    cluster: Cluster, framework: str
) -> None:
    etl = launch(cluster, f"{framework}-bounded", framework)
    target = cluster.targets[0]
    bucket = target.bucket(f"bounded-{framework}")
    objects = {f"o{i}": payload(MIB + i, seed=i) for i in range(16)}
    for name, data in objects.items():
        bucket.put(name, data)
    results: dict[str, TransformResult] = {}

    def send(name: str) -> None:  # bodies, and local files read into memory (FQN)
        fqn = name.endswith(("1", "3", "5", "7", "9"))
        results[name] = target.hpush(etl, bucket, name, fqn=fqn, etl_args="sleep=0.05")

    threads = [threading.Thread(target=send, args=(name,)) for name in objects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name, data in objects.items():
        assert results[name].error is None, results[name]
        assert results[name].content == data.upper(), name
    samples = settled(etl)
    assert value(samples, "aisetl_inflight_bytes") == 0
    assert value(samples, "aisetl_inflight_bytes_limit") == BOUND
    assert value(samples, "aisetl_memory_waiting") == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_body_past_the_bound_waits_unread(cluster: Cluster, framework: str) -> None:
    etl = launch(cluster, f"{framework}-pushback", framework)
    first = in_background(cluster, etl, f"first-{framework}", payload(MIB), "sleep=4")
    wait_for(lambda: value(scrape(etl), "aisetl_inflight_bytes") == BOUND, 10, "the first body")
    big = payload(32 * MIB, seed=5)
    server = etl.server()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        head = f"PUT /held/big HTTP/1.1\r\nHost: x\r\nContent-Length: {len(big)}\r\n\r\n"
        sock.sendall(head.encode())
        view = memoryview(big)
        sent = push_until_blocked(sock, view, quiet=0.2)
        wait_for(lambda: value(scrape(etl), "aisetl_memory_waiting") == 1, 10, "the wait")
        sent += push_until_blocked(sock, view[sent:], quiet=0.5)
        # the server reads none of it while it waits: only socket buffers hold what was sent
        assert sent < len(big) // 2, sent
        assert health_ok(etl)  # probes are answered meanwhile
        sock.sendall(view[sent:])  # goes through once the first object is answered
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        assert response.read() == big.upper()
    first[0].join(30)
    assert first[1][0].content == payload(MIB).upper()
    samples = settled(etl)
    assert value(samples, "aisetl_memory_waits_total") == 1
    assert value(samples, "aisetl_inflight_bytes") == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_body_that_waits_past_its_deadline_is_504(cluster: Cluster, framework: str) -> None:
    """An abandoned transform keeps its memory until it ends: a body waiting for it is 504."""
    etl = launch(cluster, f"{framework}-starved", framework, AISETL_OBJ_TIMEOUT="1")
    target = cluster.targets[0]
    bucket = target.bucket("held")
    bucket.put("hog", payload(MIB))
    hog = target.hpush(etl, bucket, "hog", fqn=False, etl_args="sleep=4")  # 504 at 1 s
    assert hog.status == 504, hog
    assert value(scrape(etl), "aisetl_inflight_bytes") == BOUND  # still held by the transform
    bucket.put("starved", payload(MIB, seed=2))
    result = target.hpush(etl, bucket, "starved", fqn=False)
    assert result.status == 504, result
    assert result.error is not None
    assert "waiting for memory to read its body (AISETL_MAX_INFLIGHT_BYTES)" in result.error.msg
    assert health_ok(etl)
    wait_for(lambda: value(scrape(etl), "aisetl_inflight_bytes") == 0, 10, "the hog to end")
    done = target.hpush(etl, bucket, "starved", fqn=False)
    assert done.content == payload(MIB, seed=2).upper()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_small_object_that_came_whole_waits_for_memory_too(
    cluster: Cluster, framework: str
) -> None:
    """A 1 KiB object whose head and body arrive in one read, behind a body that holds the
    bound (its head sent, its bytes held back): it waits, unanswered, until that body is
    complete and answered, then comes back byte-exact (on FastAPI the quick object would
    otherwise be answered in uvicorn's callback)."""
    etl = launch(cluster, f"{framework}-small-waits", framework)
    server = etl.server()
    small = payload(1024, seed=8)
    wire = f"PUT /held/small HTTP/1.1\r\nHost: x\r\nContent-Length: {len(small)}\r\n\r\n"
    with socket.create_connection((server.host, server.port), timeout=30) as quick:
        for _ in range(40):  # past the streak that runs a quick transform on the loop
            quick.sendall(wire.encode() + small)
            response = http.client.HTTPResponse(quick)
            response.begin()
            assert response.read() == small.upper()
    held = payload(3 * MIB // 2, seed=9)  # with room for its result: more than the bound
    with (
        socket.create_connection((server.host, server.port), timeout=30) as holder,
        socket.create_connection((server.host, server.port), timeout=30) as waiter,
    ):
        head = f"PUT /held/holder HTTP/1.1\r\nHost: x\r\nContent-Length: {len(held)}\r\n\r\n"
        holder.sendall(head.encode() + held[:1000])
        wait_for(lambda: value(scrape(etl), "aisetl_inflight_bytes") > 0, 10, "the holder")
        waiter.sendall(wire.encode() + small)
        wait_for(lambda: value(scrape(etl), "aisetl_memory_waiting") == 1, 10, "the wait")
        waiter.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiter.recv(1)  # nothing is answered while the memory is held
        waiter.settimeout(30)
        holder.sendall(held[1000:])
        first = http.client.HTTPResponse(holder)
        first.begin()
        assert first.read() == held.upper()
        second = http.client.HTTPResponse(waiter)
        second.begin()
        assert second.status == 200
        assert second.read() == small.upper()
    assert health_ok(etl)
    samples = settled(etl)
    assert value(samples, "aisetl_inflight_bytes") == 0
    assert value(samples, "aisetl_memory_waiting") == 0
