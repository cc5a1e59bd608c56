"""The header-read deadline: a client that sends its request head a byte at a time (slowloris)
gets a 408 in the one error format and is closed; the threads real requests need stay free."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from aisetl.target import EmulatedTarget

from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, serve_argv

SLOW = 8  # more slow clients than the server has threads


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    with EmulatedTarget(tmp_path_factory.mktemp("slow")) as tgt:
        for framework in FRAMEWORKS:
            for name, seconds in ((f"slow-{framework}", "1"), (f"patient-{framework}", "60")):
                tgt.launch(
                    name, [*serve_argv("tests.transformers:Upper", framework), "--threads", "4"],
                    env={**TEST_ENV, "AISETL_HEADER_TIMEOUT": seconds}, cwd=str(REPO),
                    init_timeout=60,
                )  # fmt: skip
        tgt.bucket("b").put("o", b"still served")
        yield tgt


def slowloris(host: str, port: int, answers: list[bytes], limit: float = 15.0) -> None:
    """Send a request head one byte every 0.1 s until the server answers or closes."""
    data = b""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"PUT /b/o HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stop = time.monotonic() + limit
            while time.monotonic() < stop:
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    continue
                sock.send(b"a")
    except OSError:
        pass  # the server shut the connection while a byte was on its way
    answers.append(data)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_slow_request_heads_are_answered_408(target: EmulatedTarget, framework: str) -> None:
    etl = target.cluster.etl(f"slow-{framework}")
    server = etl.server()
    answers: list[bytes] = []
    clients = [
        threading.Thread(target=slowloris, args=(server.host, server.port, answers))
        for _ in range(SLOW)
    ]
    for client in clients:
        client.start()
    time.sleep(0.3)  # every slow client has begun its head
    served = [target.hpush(etl, "b", "o", fqn=False) for _ in range(4)]
    for client in clients:
        client.join(30)
    assert [result.content for result in served] == [b"STILL SERVED"] * 4, served
    assert len(answers) == SLOW
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"content-type: text/plain" in head.lower()
        assert b"Request head not complete within 1 s (AISETL_HEADER_TIMEOUT)" in body
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_idle_keep_alive_connection_is_not_cut_by_the_head_deadline(
    target: EmulatedTarget, framework: str
) -> None:
    etl = target.cluster.etl(f"slow-{framework}")
    server = etl.server()
    request = b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"AB"):
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer
            time.sleep(1.5)  # idle longer than the head deadline: kept by the keep-alive


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_heads_still_arriving_hold_no_thread(target: EmulatedTarget, framework: str) -> None:
    """More slow heads than threads, none near its deadline: objects and probes still pass."""
    etl = target.cluster.etl(f"patient-{framework}")
    server = etl.server()
    slow = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(SLOW)]
    try:
        for sock in slow:
            sock.sendall(b"PUT /b/o HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        time.sleep(0.3)
        for sock in slow:
            sock.send(b"a")  # each head has begun and goes on
        served = [target.hpush(etl, "b", "o", fqn=False) for _ in range(4)]
        assert [result.content for result in served] == [b"STILL SERVED"] * 4, served
        assert health_ok(etl)
        readable, _, _ = select.select(slow, [], [], 0)
        assert readable == [], "a slow head was answered or closed long before its deadline"
    finally:
        for sock in slow:
            sock.close()
    assert health_ok(etl)
