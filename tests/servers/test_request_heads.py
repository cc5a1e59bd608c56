"""Request heads at the edges of HTTP/1.1, on every server over a real socket.

The standard-library server reads header fields itself (:func:`aisetl.http11.read_header_fields`,
instead of the email parser the standard library uses): a head it cannot serve gets a 4xx in
the one error format, a valid head in an unusual shape is served as any other, and the server
keeps serving. gunicorn refuses the same heads; uvicorn (httptools) has no limit on the count
or length of header lines and serves such a head (noted where it differs).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from aisetl.target import ETL

from .conftest import FRAMEWORKS, Launcher, health_ok

pytestmark = pytest.mark.parametrize("framework", FRAMEWORKS)


@pytest.fixture
def etl(launch: Launcher, framework: str) -> ETL:
    return launch(f"heads-{framework}", "tests.transformers:Upper", framework)


def exchange(etl: ETL, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` and read until the server closes or a reply to it is whole."""
    address = urlsplit(etl.url())
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = _content_length(head)
            if length is not None and len(body) >= length and b" 100 " not in head[:13]:
                break
    return received


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def put(path: str, headers: bytes, body: bytes = b"abc") -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
        + headers
        + b"Connection: close\r\n\r\n"
        + body
    )


def test_a_line_that_is_not_a_header_field_is_a_400(etl: ETL, framework: str) -> None:
    answer = exchange(etl, put("/b/o", b"this line has no colon\r\n"))
    assert status(answer) == 400
    if framework == "http":
        assert b"Malformed header line" in answer and b"Name: value" in answer
    assert health_ok(etl)


def test_too_many_header_lines_are_refused(etl: ETL, framework: str) -> None:
    many = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(150))
    answer = exchange(etl, put("/b/o", many))
    if framework == "fastapi":  # (uvicorn has no such limit)
        assert status(answer) == 200 and answer.endswith(b"ABC")
    else:
        assert 400 <= status(answer) < 500
    if framework == "http":
        assert status(answer) == 431 and b"Too many headers" in answer
    assert health_ok(etl)


def test_a_header_line_over_the_limit_is_refused(etl: ETL, framework: str) -> None:
    answer = exchange(etl, put("/b/o", b"X-Long: " + b"v" * 70_000 + b"\r\n"))
    if framework == "fastapi":  # (uvicorn has no such limit)
        assert status(answer) == 200 and answer.endswith(b"ABC")
    else:
        assert 400 <= status(answer) < 500
    if framework == "http":
        assert status(answer) == 431 and b"Line too long" in answer
    assert health_ok(etl)


def test_an_unsupported_version_is_refused(etl: ETL, framework: str) -> None:
    for version, expected in ((b"HTTP/2.0", 505), (b"HTTP/1.x", 400)):
        answer = exchange(etl, b"GET /health " + version + b"\r\nHost: x\r\n\r\n")
        if framework == "http":
            assert status(answer) == expected, answer[:200]
        elif framework == "flask":
            assert 400 <= status(answer) < 600, answer[:200]
        else:  # httptools reads any major.minor and uvicorn answers it as HTTP/1.1
            assert answer == b"" or status(answer) in (200, 400, 505), answer[:200]
    assert health_ok(etl)


def test_unusual_but_valid_heads_are_served(etl: ETL, framework: str) -> None:
    spaced = put("/b/spaced", b"X-Spaced:    padded value   \r\n")
    assert exchange(etl, spaced).endswith(b"\r\n\r\nABC")
    lower = (
        b"PUT /b/lower HTTP/1.1\r\nhost: x\r\ncontent-length:  3 \r\nconnection: close\r\n\r\nxyz"
    )
    assert exchange(etl, lower).endswith(b"\r\n\r\nXYZ")
    assert health_ok(etl)


def test_a_folded_header_line_is_joined_on_the_standard_library_server(
    etl: ETL, framework: str
) -> None:
    if framework != "http":
        pytest.skip("uvicorn and gunicorn decide folded lines themselves")
    answer = exchange(etl, put("/b/folded", b"X-Folded: first\r\n  second\r\n"))
    assert status(answer) == 200 and answer.endswith(b"ABC")


def test_expect_100_continue_gets_its_interim_answer(etl: ETL, framework: str) -> None:
    address = urlsplit(etl.url())
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(
            b"PUT /b/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 "), interim[:100]
        sock.sendall(b"hello")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    whole = interim + rest
    assert whole.endswith(b"\r\n\r\nHELLO")
    assert health_ok(etl)


def test_keep_alive_and_close_are_honoured(etl: ETL, framework: str) -> None:
    two = (
        b"PUT /b/one HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
        b"PUT /b/two HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nb"
    )
    address = urlsplit(etl.url())
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(two)
        received = b""
        while chunk := sock.recv(65536):  # the server closes after the second answer
            received += chunk
    assert received.count(b"HTTP/1.1 200 ") == 2
    assert received.endswith(b"B")
    http10 = b"PUT /b/old HTTP/1.0\r\nHost: x\r\nContent-Length: 1\r\n\r\nc"
    assert exchange(etl, http10).endswith(b"C")  # answered, then closed (exchange returns)
