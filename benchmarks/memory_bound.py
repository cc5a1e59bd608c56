"""Memory that cannot kill the pod: many large buffered PUTs into a server with a memory bound.

``python -m benchmarks.memory_bound`` (what ``make memory-check`` runs) starts each server with
``AISETL_MAX_INFLIGHT_BYTES`` (1 GiB by default) and sends it 64 objects of 64 MiB at once,
each a buffered PUT (hpush, the bytes in the body). Past the bound the server leaves a body
unread until objects in flight are answered. Every answer is compared byte for byte, and the
peak resident memory of the server's processes (``VmHWM``) must stay under the bound plus the
stated overhead: the server's idle memory and :data:`SLACK` (the framework's buffers and the
allocator's).

The objects are generated and checked chunk by chunk, so the load generator holds a few MiB,
not the 4 GiB the emulated target's driver would hold (it keeps whole objects and answers);
the emulated target still starts the servers, as a target does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aisetl.config import parse_size
from aisetl.target import ETL, EmulatedTarget
from aisetl.target.load import ProcessMemory

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
CHUNK = MIB
FRAMEWORKS = ("http", "flask", "fastapi")
#: What the bound does not cover, beyond the idle server: buffers of the HTTP stack and memory
#: the allocator keeps after a free.
SLACK = 256 * MIB


def chunk(obj: int, index: int) -> bytes:
    """Chunk ``index`` of object ``obj``: 1 MiB of seeded bytes, stamped with its position."""
    block = bytearray(random.Random(obj).randbytes(CHUNK))
    block[:16] = f"{obj:07d}:{index:07d}:".encode()
    return bytes(block)


def body(obj: int, chunks: int) -> Iterator[bytes]:
    for index in range(chunks):
        yield chunk(obj, index)


@dataclass
class Outcome:
    """One object's answer."""

    status: int
    exact: bool
    error: str = ""


def put(host: str, port: int, obj: int, chunks: int, timeout: float) -> Outcome:
    """PUT object ``obj`` (``chunks`` MiB) as a target does, and compare the answer chunkwise."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Length": str(chunks * CHUNK)}
        conn.request("PUT", f"/big/obj-{obj}.bin", body=body(obj, chunks), headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            return Outcome(response.status, False, response.read(300).decode("utf-8", "replace"))
        exact = True
        for index in range(chunks):
            exact = exact and response.read(CHUNK) == chunk(obj, index).upper()
        exact = exact and response.read(1) == b""
        return Outcome(200, exact)
    except OSError as exc:
        return Outcome(0, False, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def launch(target: EmulatedTarget, framework: str, bound: int) -> ETL:
    argv = [
        sys.executable, "-m", "aisetl", "serve", "tests.transformers:Upper",
        "--server", framework, "--host", "127.0.0.1", "--port", "{port}",
    ]  # fmt: skip
    env = {"PYTHONPATH": str(REPO), "AISETL_MAX_INFLIGHT_BYTES": str(bound)}
    return target.launch(f"{framework}-memory", argv, env=env, cwd=str(REPO), init_timeout=60)


def measure(framework: str, objects: int, size: int, bound: int) -> dict[str, object]:
    """One server: send everything at once, check it, and read its peak memory."""
    chunks = size // CHUNK
    with (
        tempfile.TemporaryDirectory(prefix="aisetl-memory-") as root,
        EmulatedTarget(root, obj_timeout=600) as target,
    ):
        etl = launch(target, framework, bound)
        server = etl.server()
        memory = ProcessMemory(etl.processes[0].pid)
        idle = memory.rss()
        memory.reset_peak()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(objects) as pool:
            answers = list(
                pool.map(
                    lambda obj: put(server.host, server.port, obj, chunks, 600), range(objects)
                )
            )
        seconds = time.monotonic() - started
        peak = memory.peak()
        target.stop(etl)
    exact = sum(1 for a in answers if a.exact)
    errors = [a.error for a in answers if not a.exact][:3]
    limit = bound + idle + SLACK
    return {
        "server": framework,
        "exact": exact,
        "errors": errors,
        "idle": idle,
        "peak": peak,
        "limit": limit,
        "seconds": seconds,
        "ok": exact == objects and peak <= limit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=64, help="objects sent at once (64)")
    parser.add_argument("--size", default="64MiB", help="object size, whole MiB (64MiB)")
    parser.add_argument("--bound", default="1GiB", help="AISETL_MAX_INFLIGHT_BYTES (1GiB)")
    parser.add_argument("--server", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    args = parser.parse_args(argv)
    size = parse_size("--size", args.size)
    bound = parse_size("--bound", args.bound)
    if size % CHUNK or size <= 0:
        parser.error("--size must be a whole number of MiB")
    print(
        f"{args.objects} concurrent PUTs of {size // MIB} MiB ({args.objects * size // MIB} MiB) "
        f"into each server, AISETL_MAX_INFLIGHT_BYTES={bound // MIB} MiB; "
        f"peak RSS must stay under bound + idle RSS + {SLACK // MIB} MiB",
        flush=True,
    )
    print(
        f"{'server':8} {'byte-exact':>11} {'idle RSS':>9} {'peak RSS':>9} {'limit':>9} "
        f"{'seconds':>8}  result",
        flush=True,
    )
    ok = True
    for framework in args.server:
        row = measure(framework, args.objects, size, bound)
        ok = ok and bool(row["ok"])
        print(
            f"{framework:8} {row['exact']:>5}/{args.objects:<5} "
            f"{row['idle'] // MIB:>5} MiB {row['peak'] // MIB:>5} MiB "  # type: ignore[operator]
            f"{row['limit'] // MIB:>5} MiB {row['seconds']:>8.1f}  "  # type: ignore[operator]
            + ("ok" if row["ok"] else f"FAILED {row['errors']}"),
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
