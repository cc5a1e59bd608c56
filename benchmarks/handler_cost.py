"""The Python cost of one small object in a FastAPI server's protocol and handler, with no
sockets: ours against the reference's, each in its own interpreter, in the same run.

The side-by-side benchmark measures a whole server's CPU per object through real sockets; on a
shared two-core machine its figures for 1 KiB objects move by 20 % or more from run to run,
and a change of a few microseconds is lost in that. Here uvicorn's HTTP (and WebSocket)
protocol of each server is fed whole requests by hand, one at a time, through a transport
that keeps what is written only until the answer is complete. The kernel takes no part; what
is measured is the process's CPU time per object (every thread, for a server that hands the
transform to one): uvicorn's parsing and cycle, the framework, the handler, the transform
(echo). Its figures move from run to run far less than the socket benchmark's small-object
cells; compare the median of a few runs. It is not a server's whole cost: the kernel's reads
and writes come on top (the raw echo server of ``benchmarks.run`` shows about how much).

``python -m benchmarks.handler_cost [--mode hpush ws] [--objects N] [--rounds R]``
(``AISETL_REFERENCE_PYTHON``: the reference's interpreter; ``make bench-handler``).

Each side runs R rounds of N objects after a warm-up and reports its best round (the least
disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODES = ("hpush", "ws")
#: The body of each object, and of each ws task's payload.
SIZE = 1024
#: Objects answered before the measured rounds (past our inline policy's streak of 32).
WARM_UP = 300
#: uvicorn settings of the reference runtime image (as ``benchmarks.servers`` starts it).
REFERENCE_CONFIG = {
    "ws_max_size": 17179869184,
    "ws_ping_interval": 0,
    "ws_ping_timeout": 86400,
    "access_log": False,
}


class CountingTransport(asyncio.Transport):
    """What a uvicorn protocol needs of a transport; what is written is kept until
    :attr:`written` resolves (when it ends with :attr:`ending`), then dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.written: asyncio.Future[bytes] | None = None
        self.ending = b""
        self.kept = b""
        self.protocol: Any = None
        self.closed = False

    def expect(self, ending: bytes) -> asyncio.Future[bytes]:
        """A future of what is written until it ends with ``ending``."""
        self.written = asyncio.get_running_loop().create_future()
        self.ending = ending
        self.kept = b""
        return self.written

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.kept += bytes(data)
        written = self.written
        if written is not None and not written.done() and self.kept.endswith(self.ending):
            written.set_result(self.kept)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


def client_frame(opcode: int, payload: bytes, mask: bytes = b"\x5a\xa5\x0f\xf0") -> bytes:
    """A whole masked frame as a client writes it."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def hpush_request(body: bytes) -> bytes:
    """An hpush PUT laid out as the target's Go client writes it."""
    head = (
        "PUT /ais/@%23bench/objects/o-1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        f"User-Agent: Go-http-client/1.1\r\nContent-Length: {len(body)}\r\n"
        "Accept-Encoding: gzip\r\n\r\n"
    )
    return head.encode() + body


def ws_task(body: bytes) -> bytes:
    """One ws task: the control message (binary, as the target sends it) and the payload."""
    control = json.dumps({"path": "ais/@#bench/objects/o-1", "etl_args": "", "fqn": ""})
    return client_frame(0x2, control.encode()) + client_frame(0x2, body)


def load_app(side: str) -> Any:
    """The ASGI app and uvicorn config of ``side`` (``ours`` or ``ref``), echo transform."""
    import uvicorn

    sys.path.insert(0, str(HERE))
    if side == "ref":
        os.environ.setdefault("BENCH_FRAMEWORK", "fastapi")
        os.environ.setdefault("BENCH_TRANSFORM", "echo")
        import reference_app  # type: ignore[import-not-found]

        return uvicorn.Config(reference_app.server.app, **REFERENCE_CONFIG)  # type: ignore[arg-type]
    import transforms  # type: ignore[import-not-found]

    from aisetl import FastAPIServer

    class Echo(FastAPIServer):
        def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
            assert isinstance(data, bytes)  # (no FQN here)
            return transforms.echo(data)  # type: ignore[no-any-return]

    return Echo(host="127.0.0.1", port=8000).uvicorn_config()


async def measure(side: str, mode: str, objects: int, rounds: int) -> float:
    """The best round's CPU seconds per object (this process, every thread)."""
    from uvicorn.server import ServerState

    config = load_app(side)
    config.load()
    transport = CountingTransport()
    http = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    http.connection_made(transport)
    transport.protocol = http
    body = os.urandom(SIZE)
    if mode == "ws":
        key = base64.b64encode(os.urandom(16)).decode()
        upgraded = transport.expect(b"\r\n\r\n")
        http.data_received(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = await asyncio.wait_for(upgraded, 10)
        if not answer.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"{side}: the ws upgrade was refused: {answer[:200]!r}")
        wire = ws_task(body)
    else:
        wire = hpush_request(body)
    protocol = transport.protocol

    answered = 0

    async def one() -> None:
        nonlocal answered
        written = transport.expect(body)
        protocol.data_received(wire)
        await written
        answered += 1

    async def watchdog(measuring: asyncio.Task[float]) -> None:
        """Stop a side whose answer never comes (a wrong one does not end with the body)."""
        seen = -1
        while seen != answered:
            seen = answered
            await asyncio.sleep(5)
        measuring.cancel(f"{side} {mode}: no answer in 5 s; written: {transport.kept[:300]!r}")

    measuring = asyncio.current_task()
    assert measuring is not None
    guard = asyncio.ensure_future(watchdog(measuring))
    try:
        return await rounds_of(one, objects, rounds)
    finally:
        guard.cancel()


async def rounds_of(one: Any, objects: int, rounds: int) -> float:
    """The best of ``rounds`` rounds of ``objects`` calls of ``one``: CPU seconds per call."""

    for _ in range(WARM_UP):
        await one()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(objects):
            await one()
        best = min(best, (time.process_time() - started) / objects)
    return best


def run_side(side: str, mode: str, objects: int, rounds: int) -> float:
    """Measure one side in a fresh interpreter (the reference's own for ``ref``)."""
    python = sys.executable if side == "ours" else os.environ.get("AISETL_REFERENCE_PYTHON")
    if not python:
        raise SystemExit("set AISETL_REFERENCE_PYTHON to the reference SDK's interpreter")
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{REPO}")
    env.setdefault("AIS_TARGET_URL", "http://127.0.0.1:1")  # (never called: echo over hpush)
    argv = [python, "-m", "benchmarks.handler_cost", "--side", side, "--mode", mode]
    argv += ["--objects", str(objects), "--rounds", str(rounds)]
    done = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{side} {mode} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--objects", type=int, default=20000, help="objects per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is reported")
    parser.add_argument("--side", choices=("ours", "ref"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:  # a child: print one number
        import uvloop

        (mode,) = args.mode
        print(uvloop.run(measure(args.side, mode, args.objects, args.rounds)))
        return 0
    print("mode   ours us/object  reference us/object  ours/ref")
    for mode in args.mode:
        ours = run_side("ours", mode, args.objects, args.rounds)
        ref = run_side("ref", mode, args.objects, args.rounds)
        print(f"{mode:<6} {ours * 1e6:14.1f} {ref * 1e6:20.1f} {ours / ref:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
