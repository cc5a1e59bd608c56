"""Buffered bodies read the short way (FastAPI: the parser's pieces joined once; Flask: straight
from gunicorn's socket): a client that vanishes mid-body, a request pipelined right behind a
body, ``Expect: 100-continue``, in every framework."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from aisetl.target import ETL, EmulatedTarget

from ..transformers import upper
from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, payload, serve_argv


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ETL]]:
    with EmulatedTarget(tmp_path_factory.mktemp("bodies")) as target:
        yield {
            fw: target.launch(
                f"bodies-{fw}",
                serve_argv("tests.transformers:Upper", fw),
                comm="hpush",
                env={**TEST_ENV, "AISETL_INLINE_MAX_BYTES": "0"},
                cwd=str(REPO),
                init_timeout=60,
            )
            for fw in FRAMEWORKS
        }


def exchange(etl: ETL, data: bytes, *, close_after: int | None = None) -> bytes:
    """Send raw bytes (the last request asks to close); read until the server closes."""
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        sock.sendall(data if close_after is None else data[:close_after])
        if close_after is not None:
            return b""
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)


def put(path: str, body: bytes, extra: bytes = b"", last: bool = True) -> bytes:
    head = f"PUT /{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
    return head + extra + (b"Connection: close\r\n" if last else b"") + b"\r\n" + body


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_pipelined_requests_after_a_large_body(servers: dict[str, ETL], framework: str) -> None:
    etl = servers[framework]
    big, small = payload(3 * 1024 * 1024 + 7), payload(1000, seed=1)
    answer = exchange(etl, put("b/big", big, last=False) + put("b/small", small))
    assert answer.count(b"HTTP/1.1 200") == 2, answer[:300]
    first = answer.index(upper(big))
    assert answer.index(upper(small), first + len(big)) > first  # both, in order
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_expect_100_continue(servers: dict[str, ETL], framework: str) -> None:
    etl = servers[framework]
    body = payload(200_000, seed=2)
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        sock.sendall(put("b/ask", b"", b"Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", f"Content-Length: {len(body)}".encode()
        ))  # fmt: skip
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        chunks = [interim]
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert b"HTTP/1.1 200" in answer and answer.endswith(upper(body)), answer[:300]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_client_that_vanishes_mid_body(servers: dict[str, ETL], framework: str) -> None:
    etl = servers[framework]
    for _ in range(3):
        exchange(etl, put("b/gone", payload(2_000_000, seed=3)), close_after=700_000)
    assert health_ok(etl)
    body = payload(500_000, seed=4)
    answer = exchange(etl, put("b/after", body))
    assert b"HTTP/1.1 200" in answer and answer.endswith(upper(body))
