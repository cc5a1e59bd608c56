"""Readiness probes answered at accept time: only a whole, bodiless probe; nothing else read."""

from __future__ import annotations

import socket

import pytest

from aisetl import drain
from aisetl.probe_fastpath import Waiting, answer_waiting_probe, probe_answer

PROBE = (
    b"GET /health HTTP/1.1\r\nHost: probe:8000\r\nUser-Agent: kube-probe/1.31\r\n"
    b"Connection: close\r\n\r\n"
)


@pytest.mark.parametrize(
    "data",
    [
        PROBE[:-2],  # not complete yet
        PROBE + b"GET /health HTTP/1.1\r\n\r\n",  # pipelined: the ordinary path
        b"PUT /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n",  # an object named health
        b"GET /health?x=1 HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        b"",
    ],
)
def test_anything_but_one_whole_probe_takes_the_ordinary_path(data: bytes) -> None:
    assert probe_answer(data) is None


def test_a_waiting_probe_is_answered_and_consumed() -> None:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(PROBE)
        assert answer_waiting_probe(server) is Waiting.ANSWERED
        answer = client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nRunning")
        assert b"Connection: close" in answer
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(1)  # the probe was consumed, nothing else


def test_a_head_probe_gets_no_body_and_other_requests_are_left_unread() -> None:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer_waiting_probe(server) is Waiting.ANSWERED
        assert client.recv(4096).endswith(b"Connection: close\r\n\r\n")
    server, client = socket.socketpair()
    with server, client:
        assert answer_waiting_probe(server) is Waiting.NOTHING
        client.sendall(b"PUT /b/o HTTP/1.1\r\nContent-Length: 1\r\n\r\na")
        assert answer_waiting_probe(server) is Waiting.OTHER
        assert server.recv(4096).startswith(b"PUT /b/o")  # untouched


def test_a_draining_server_leaves_probes_to_the_ordinary_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While draining after SIGTERM, /health answers 503 with the reason: not here."""
    monkeypatch.setattr(drain, "reason", lambda: "SIGTERM")
    assert probe_answer(PROBE) is None
    server, client = socket.socketpair()
    with server, client:
        client.sendall(PROBE)
        assert answer_waiting_probe(server) is Waiting.OTHER
        assert server.recv(4096) == PROBE  # left for the server, which answers 503
