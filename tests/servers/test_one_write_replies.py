"""Replies whose body is whole go out in one write on FastAPI (``send_whole``), with the framing
uvicorn's own two messages would give: its default headers, ``Content-Length``, keep-alive or
close, pipelined requests answered in order, no body after a HEAD. Checked on the wire, beside
the other servers."""

from __future__ import annotations

import socket

import pytest

from aisetl.target import ETL

from ..transformers import upper
from .conftest import FRAMEWORKS, Launcher, health_ok, payload

pytestmark = pytest.mark.parametrize("framework", FRAMEWORKS)


@pytest.fixture
def etl(launch: Launcher, framework: str) -> ETL:
    return launch(f"one-write-{framework}", "tests.transformers:Upper", framework, comm="hpush")


def _until_closed(etl: ETL, data: bytes) -> bytes:
    """Send raw bytes; read until the server closes the connection."""
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def _responses(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Split HTTP/1.1 responses framed by Content-Length: (status line, headers, body)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        line, *fields = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(b":") for f in fields)}
        size = int(headers[b"content-length"])
        found.append((line, headers, rest[:size]))
        data = rest[size:]
    return found


def _put(path: str, body: bytes, version: str = "1.1", close: bool = False) -> bytes:
    head = f"PUT /{path} HTTP/{version}\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def test_pipelined_small_replies_come_whole_and_in_order(etl: ETL, framework: str) -> None:
    bodies = [payload(100 + i, seed=i) for i in range(5)]
    wire = b"".join(_put(f"b/o{i}", b, close=i == 4) for i, b in enumerate(bodies))
    replies = _responses(_until_closed(etl, wire))
    assert [line for line, _, _ in replies] == [b"HTTP/1.1 200 OK"] * 5
    assert [body for _, _, body in replies] == [upper(b) for b in bodies]
    assert replies[-1][1].get(b"connection") == b"close"
    assert all(headers.get(b"connection") != b"close" for _, headers, _ in replies[:-1])
    if framework == "fastapi":  # uvicorn's default headers are kept
        assert all(b"date" in headers for _, headers, _ in replies)
    assert health_ok(etl)


def test_an_http_1_0_request_is_answered_and_closed(etl: ETL) -> None:
    body = payload(300, seed=9)
    replies = _responses(_until_closed(etl, _put("b/old", body, version="1.0")))
    assert len(replies) == 1  # (the server closed the connection after it: the read ended)
    line, _, answer = replies[0]
    assert line.startswith(b"HTTP/1.") and line.split(b" ")[1] == b"200", line
    assert answer == upper(body)
    assert health_ok(etl)


def test_an_error_reply_keeps_the_connection_for_the_next_request(etl: ETL) -> None:
    wire = (
        b"PUT /b/bad?etl_fqn=/nowhere/at/all HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        + _put("b/next", b"after", close=True)
    )
    replies = _responses(_until_closed(etl, wire))
    statuses = [line.split(b" ")[1] for line, _, _ in replies]
    assert len(replies) == 2 and statuses[0] != b"200" and statuses[1] == b"200", replies
    assert b"/nowhere/at/all" in replies[0][2]
    assert replies[1][2] == upper(b"after")
    assert health_ok(etl)


def test_a_head_request_gets_a_head_without_a_body(etl: ETL) -> None:
    head_request = b"HEAD /b/obj HTTP/1.1\r\nHost: x\r\n\r\n"
    data = _until_closed(etl, head_request + _put("b/next", b"then", close=True))
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] != b"200", head  # objects are PUT or GET
    # No body after the HEAD answer's head (whatever its Content-Length says): the next
    # bytes are the next answer, or nothing when the server closed after it.
    assert not rest or rest.startswith(b"HTTP/1.1 200"), rest[:200]
    if rest:
        assert _responses(rest)[0][2] == upper(b"then")
    assert health_ok(etl)
