"""Hostile requests on the wire, walked by hypothesis, in every server (and ws for FastAPI).

Paths, ``etl_fqn``, ``etl_args`` and ``Ais-Node-Url`` with NUL bytes, undecodable bytes and
malformed URLs; ws control messages a target could never send. Each one gets an answer (never
a bare EOF), never a 5xx, errors in the one plain-text format; the server stays healthy.
Hops are refused by ``AISETL_HOP_ALLOW``, so nothing leaves the machine's loopback.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterator

import pytest
import websockets
from hypothesis import HealthCheck, given, settings

from aisetl.target import EmulatedTarget
from reliability.hostile import WS_MESSAGES, requests

from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, serve_argv

PROFILE = settings(
    max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
ENV = {**TEST_ENV, "AISETL_HOP_ALLOW": "allowed.invalid"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    with EmulatedTarget(tmp_path_factory.mktemp("hostile-wire"), ws_timeout=10) as tgt:
        for framework in FRAMEWORKS:
            tgt.launch(
                f"wire-{framework}", serve_argv("tests.transformers:Upper", framework),
                comm="ws" if framework == "fastapi" else "hpush", env=ENV, cwd=str(REPO),
                init_timeout=60,
            )  # fmt: skip
        tgt.bucket("b").put("o", b"hello")
        yield tgt


def exchange(host: str, port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send one request (it says Connection: close) and read until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def check_answer(answer: bytes, request: bytes) -> None:
    """An HTTP answer, not a 5xx, an error in plain text."""
    assert answer.startswith(b"HTTP/1."), (request, answer[:200])
    status = int(answer.split(b" ", 2)[1])
    head, _, body = answer.partition(b"\r\n\r\n")
    if status == 501:  # RFC 9112 §6.1: a transfer coding the server does not implement
        assert b"transfer-encoding:" in request.lower() and b"Transfer-Encoding" in body
    else:
        assert status < 500, (request, answer[:500])
    if status >= 400:
        assert b"content-type: text/plain" in head.lower(), (request, answer[:500])
        assert b"<html" not in body.lower() and body.strip(), (request, answer[:500])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hostile_requests(target: EmulatedTarget, framework: str) -> None:
    etl = target.cluster.etl(f"wire-{framework}")
    server = etl.server()

    @PROFILE
    @given(request=requests())
    def walk(request: bytes) -> None:
        check_answer(exchange(server.host, server.port, request), request)

    walk()
    assert health_ok(etl)
    assert "Traceback" not in etl.logs(), etl.logs()[-3000:]


async def ws_walk(url: str, message: bytes, fqn_control: bytes) -> list[bytes | str]:
    """Send the hostile message, then valid FQN tasks until one of them is answered."""
    answers: list[bytes | str] = []
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        await ws.send(message)
        for _ in range(3):  # the first one may be taken for the hostile task's payload
            await ws.send(fqn_control)
        while b"HELLO" not in answers:
            answers.append(await asyncio.wait_for(ws.recv(), 10))
    return answers


def test_hostile_ws_control_messages(target: EmulatedTarget) -> None:
    etl = target.cluster.etl("wire-fastapi")
    server = etl.server()
    url = f"ws://{server.host}:{server.port}/ws"
    fqn_control = json.dumps({"path": "b/o", "fqn": target.bucket("b").fqn("o")}).encode()

    @PROFILE
    @given(message=WS_MESSAGES)
    def walk(message: bytes) -> None:
        answers = asyncio.run(ws_walk(url, message, fqn_control))
        assert answers[-1] == b"HELLO"
        for answer in answers[:-1]:  # the hostile task's answer: a result or an error text
            assert isinstance(answer, bytes) or "Internal error" not in answer, answer

    walk()
    assert health_ok(etl)
    assert "Traceback" not in etl.logs(), etl.logs()[-3000:]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_body_refused_unread_does_not_become_the_next_request(
    target: EmulatedTarget, framework: str
) -> None:
    """A request answered before its body was read, then another on the same connection: the
    first body is drained (or the connection closed), never parsed as a request."""
    etl = target.cluster.etl(f"wire-{framework}")
    server = etl.server()
    unread = b"GET /b/o HTTP/1.1\r\n\r\n"  # a request, if the body were taken for one
    refused = b"DELETE /b/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        len(unread),
        unread,
    )
    second = b"PUT /b/y HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nworld"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(refused)
        first = http.client.HTTPResponse(sock)
        first.begin()
        first.read()
        assert first.status == 405, first.status
        if first.getheader("Connection", "").lower() == "close":
            return  # closing is the other right answer
        sock.sendall(second)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert (answer.status, answer.read()) == (200, b"WORLD")
    assert health_ok(etl)
