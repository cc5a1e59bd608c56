"""FastAPI under ``aisetl serve`` accepts on a thread of its own: a readiness probe does not
wait for turns of a busy event loop, and a loop that has stopped turning is not reported
ready by that thread."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from aisetl._uvicorn_run import LOOP_STUCK_SECONDS, GracefulServer, etl_uvicorn_config
from aisetl.config import Settings
from aisetl.target import EmulatedTarget

from .conftest import REPO, TEST_ENV, health_ok, serve_argv

PROBE = b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"


def _probe(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(PROBE)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_a_probe_is_answered_while_a_transform_blocks_the_event_loop(tmp_path: Path) -> None:
    marker = tmp_path / "blocking"
    with EmulatedTarget(tmp_path / "cluster") as target:
        etl = target.launch(
            "blocked", [*serve_argv("tests.transformers:AsyncUpper", "fastapi"), "--workers", "1"],
            env=TEST_ENV, cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        target.bucket("b").put("o", b"abc")
        done: dict[str, object] = {}

        def push() -> None:
            done["result"] = target.hpush(etl, "b", "o", fqn=False, etl_args=f"block=3:{marker}")

        pusher = threading.Thread(target=push)
        pusher.start()
        stop = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < stop:
            time.sleep(0.01)
        assert marker.exists(), "the transform never began"
        server = etl.server()
        answer = _probe(server.host, server.port)  # the loop is blocked in time.sleep now
        still_blocked = marker.exists()  # removed by the transform when it stops blocking
        pusher.join(60)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"Running"), answer
        assert still_blocked, "the probe was answered only once the loop turned again"
        assert done["result"].content == b"ABC"  # type: ignore[attr-defined]
        assert health_ok(etl)


def test_a_loop_that_stopped_turning_is_left_to_answer_its_own_probes() -> None:
    settings = Settings(target_url="http://127.0.0.1:1")
    server = GracefulServer(etl_uvicorn_config(None, "127.0.0.1", 0, settings))
    server._turned = time.monotonic()
    assert server._loop_turning()
    server._turned = time.monotonic() - LOOP_STUCK_SECONDS - 0.1
    assert not server._loop_turning()
