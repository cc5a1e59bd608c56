"""A connection a worker accepted just before it stops is still answered: its client has
connected to this process, and its request may be on its way (a readiness probe, say)."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from aisetl.target import EmulatedTarget

from .conftest import FRAMEWORKS, REPO, TEST_ENV, serve_argv


def _read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except OSError as exc:  # a reset: the connection was dropped
        return data + f"<{type(exc).__name__}>".encode()
    return data


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_request_sent_just_after_the_stop_on_an_earlier_connection_is_answered(
    tmp_path: Path, framework: str
) -> None:
    with EmulatedTarget(tmp_path) as target:
        argv = [*serve_argv("tests.transformers:Upper", framework), "--workers", "1"]
        etl = target.launch(f"stop-{framework}", argv, env=TEST_ENV, cwd=str(REPO), init_timeout=60)
        server = etl.server()
        with socket.create_connection((server.host, server.port), timeout=10) as client:
            time.sleep(0.3)  # accepted by now, with nothing sent
            etl.processes[0].proc.send_signal(signal.SIGTERM)  # nothing in flight: it stops
            time.sleep(0.3)  # the stop has begun
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = _read_answer(client)
        assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 503 ")), answer
        assert etl.processes[0].proc.wait(30) == 0
