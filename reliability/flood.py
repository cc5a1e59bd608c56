"""Connection floods: many new keep-alive clients and many large bodies at once.

Each client speaks plain HTTP/1.1 over asyncio streams: the small ones send one object and
keep their connection open until the end; the large ones send one body of ``body_size`` bytes.
Every answer is checked byte for byte (the servers under test run ``Upper``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

SMALL = b"abcdefghij" * 100


@dataclass
class FloodResult:
    """What a flood saw from the client side."""

    small_ok: int = 0
    large_ok: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


def _put(path: str, body: bytes) -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: flood\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )


async def _client(
    host: str,
    port: int,
    body: bytes,
    name: str,
    hold: asyncio.Event,
    result: FloodResult,
    large: bool,
    timeout: float,
) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
            writer.write(_put(f"/flood/{name}", body))
            await writer.drain()
            status, answer = await _read_response(reader)
        if status != 200 or answer != body.upper():
            result.errors.append(f"{name}: {status} {answer[:80]!r}")
        elif large:
            result.large_ok += 1
        else:
            result.small_ok += 1
        await hold.wait()  # keep the connection open, idle, until the flood ends
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        result.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()


async def flood(
    host: str,
    port: int,
    *,
    connections: int = 1000,
    bodies: int = 200,
    body_size: int = 4 * 1024 * 1024,
    timeout: float = 120.0,
) -> FloodResult:
    """Open ``connections`` keep-alive clients and send ``bodies`` large bodies, all at once."""
    result = FloodResult()
    hold = asyncio.Event()
    large = bytes(range(97, 123)) * (body_size // 26 + 1)
    large = large[:body_size]
    started = time.monotonic()
    tasks = [
        asyncio.ensure_future(_client(host, port, SMALL, f"s{i}", hold, result, False, timeout))
        for i in range(connections)
    ]
    tasks += [
        asyncio.ensure_future(_client(host, port, large, f"l{i}", hold, result, True, timeout))
        for i in range(bodies)
    ]
    deadline = started + timeout
    while result.small_ok + result.large_ok + len(result.errors) < len(tasks):
        if time.monotonic() > deadline:
            result.errors.append("flood did not finish in time")
            break
        await asyncio.sleep(0.05)
    result.seconds = time.monotonic() - started
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result
