"""Fixtures for wire tests of the three servers against the emulated target."""

from __future__ import annotations

import os
import random
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from aisetl.target import ETL, EmulatedTarget

REPO = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("http", "flask", "fastapi")
#: Fast direct-put retries for tests (the real schedule is 1, 2, 4 s).
TEST_ENV = {"AISETL_RETRY_BACKOFF": "0.01", "PYTHONPATH": str(REPO)}


def serve_argv(spec: str, framework: str) -> list[str]:
    """The command a container would run, on an ephemeral port."""
    return [
        sys.executable, "-m", "aisetl", "serve", spec,
        "--server", framework, "--host", "127.0.0.1", "--port", "{port}",
    ]  # fmt: skip


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes of any value 0-255 (lowercase ASCII included, so ``upper`` bites)."""
    return random.Random(size * 7919 + seed).randbytes(size)


Launcher = Callable[..., ETL]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    """One emulated target per test module (retry sleeps scaled down)."""
    with EmulatedTarget(tmp_path_factory.mktemp("target"), time_scale=0.01) as tgt:
        yield tgt


@pytest.fixture(scope="module")
def launch(target: EmulatedTarget) -> Launcher:
    """Start ``spec`` on ``framework`` as ETL ``name`` (once per module and name)."""
    started: dict[str, ETL] = {}

    def _launch(
        name: str,
        spec: str,
        framework: str,
        env: Mapping[str, str] | None = None,
        comm: str | None = None,
    ) -> ETL:
        if comm is None:  # FastAPI speaks ws too: open the inline ws pool for it
            comm = "ws" if framework == "fastapi" else "hpush"
        if name not in started:
            started[name] = target.launch(
                name, serve_argv(spec, framework), comm=comm, env={**TEST_ENV, **(env or {})},
                cwd=str(REPO), init_timeout=60,
            )  # fmt: skip
        return started[name]

    return _launch


def health_ok(etl: ETL) -> bool:
    """Whether the server still answers ``/health`` with 200 ``Running``."""
    import urllib.request

    with urllib.request.urlopen(etl.url() + "/health", timeout=5) as response:
        return bool(response.status == 200 and response.read() == b"Running")


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique object names within a module's bucket."""
    counter = iter(range(10**9))

    def _name(stem: str) -> str:
        return f"{stem}-{os.getpid()}-{next(counter)}"

    return _name


def raw_exchange(etl: ETL, request: bytes, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes to the server; return what it answers before closing or going quiet."""
    with socket.create_connection(
        (etl.server().host, etl.server().port), timeout=read_timeout
    ) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [
                        line
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ]
                    if length and len(rest) >= int(length[0].split(b":")[1]):
                        break
        except TimeoutError:
            pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])
