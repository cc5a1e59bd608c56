"""FastAPI over ws with a streaming transform: payloads and replies pass frame by frame."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from aisetl.protocol import WS_PATH
from aisetl.target import ETL, EmulatedTarget
from aisetl.target.wire import ws_control_message

from .conftest import REPO, TEST_ENV, Launcher, health_ok, payload, serve_argv


def reply_frames(etl: ETL, path: str, data: bytes, timeout: float = 30.0) -> list[Frame]:
    """Send one ws task as a target does; the data frames of the reply, as they came."""
    uri = parse_uri(etl.url().replace("http://", "ws://", 1) + WS_PATH)
    client = ClientProtocol(uri, max_size=None)
    deadline = time.monotonic() + timeout
    frames: list[Frame] = []
    with socket.create_connection((uri.host, uri.port), timeout=timeout) as sock:

        def flush() -> None:
            sock.sendall(b"".join(client.data_to_send()))

        client.send_request(client.connect())
        flush()
        sent = False
        while time.monotonic() < deadline:
            received = sock.recv(1 << 20)
            assert received, f"the server closed the connection; frames so far: {len(frames)}"
            client.receive_data(received)
            for event in client.events_received():
                if isinstance(event, Response):
                    assert event.status_code == 101, event
                    client.send_binary(ws_control_message(path))
                    client.send_binary(data)
                    flush()
                    sent = True
                elif isinstance(event, Frame) and event.opcode in (Opcode.BINARY, Opcode.CONT):
                    frames.append(event)
                    if event.fin:
                        return frames
                elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    raise AssertionError(f"a text reply: {event.data.decode()}")
    raise AssertionError(f"no whole reply within {timeout} s (task sent: {sent})")


def test_frames_mode_is_on_under_aisetl_serve(launch: Launcher) -> None:
    """uvicorn's protocol is the extended one: a streamed reply leaves in several frames."""
    data = payload(3 * 1024 * 1024 + 5)
    on = launch("frames-echo", "tests.transformers:UpperStream", "fastapi")
    frames = reply_frames(on, "frames/on.bin", data)
    assert len(frames) > 1
    assert b"".join(frame.data for frame in frames) == data.upper()
    assert "DependencyWarning" not in on.logs()
    # The same server with the extension off sends uvicorn's whole message: one frame.
    env = {"AISETL_WS_FRAMES": "false"}
    off = launch("frames-off", "tests.transformers:UpperStream", "fastapi", env=env)
    frames = reply_frames(off, "frames/off.bin", data)
    assert len(frames) == 1 and frames[0].data == data.upper()


def test_large_object_streams_through_byte_exact(target: EmulatedTarget, launch: Launcher) -> None:
    etl = launch("frames-echo", "tests.transformers:UpperStream", "fastapi")
    bucket = target.bucket("frames")
    data = payload(40 * 1024 * 1024 + 3)
    bucket.put("big.bin", data)
    bucket.put("small.txt", b"after the big one")
    result = target.ws(etl, bucket, "big.bin", fqn=False)
    assert result.error is None, result.error
    assert result.content == data.upper()
    assert target.ws(etl, bucket, "small.txt", fqn=False).content == b"AFTER THE BIG ONE"


def test_unread_payload_is_skipped_before_the_next_task(
    target: EmulatedTarget, launch: Launcher
) -> None:
    etl = launch("frames-head", "tests.servers.ws_servers:HeadOnly", "fastapi")
    bucket = target.bucket("frames")
    first, second = payload(5 * 1024 * 1024, 1), payload(3000, 2)
    bucket.put("first.bin", first)
    bucket.put("second.bin", second)
    for _ in range(3):
        assert target.ws(etl, bucket, "first.bin", fqn=False).content == first[:10]
        assert target.ws(etl, bucket, "second.bin", fqn=False).content == second[:10]


def test_failure_after_the_first_part_breaks_the_connection(tmp_path: Path) -> None:
    # The task of a broken connection stays pending until the job's deadline, as in a
    # cluster (PROTOCOL.md §7.6): a short one keeps this test quick.
    with EmulatedTarget(tmp_path, ws_timeout=3) as target:
        etl = target.launch(
            "frames-fail", serve_argv("tests.servers.ws_servers:FailMidway", "fastapi"),
            comm="ws", env=TEST_ENV, cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        bucket = target.bucket("frames")
        bucket.put("doomed.bin", payload(3 * 1024 * 1024))
        result = target.ws(etl, bucket, "doomed.bin", fqn=False)
        # The target never stores a truncated object: it sees the connection break.
        assert result.error is not None and result.content is None
        assert "1011" in result.error.msg or "connection lost" in result.error.msg
        assert "aborted mid-stream" in etl.logs()
        assert health_ok(etl)
