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

from .conftest import FRAMEWORKS, Launcher, health_ok, raw_exchange, status_of

pytestmark = pytest.mark.parametrize("framework", FRAMEWORKS)


@pytest.fixture
def etl(launch: Launcher, framework: str) -> ETL:
    return launch(f"heads-{framework}", "tests.transformers:Upper", framework)


def put(path: str, headers: bytes, body: bytes = b"abc") -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
        + headers
        + b"Connection: close\r\n\r\n"
        + body
    )


def test_a_line_that_is_not_a_header_field_is_a_400(etl: ETL, framework: str) -> None:
    answer = raw_exchange(etl, put("/b/o", b"this line has no colon\r\n"))
    assert status_of(answer) == 400
    if framework == "http":
        assert b"Malformed header line" in answer and b"Name: value" in answer
    assert health_ok(etl)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (b"".join(b"X-Filler-%d: v\r\n" % i for i in range(150)), b"Too many headers"),
        (b"X-Long: " + b"v" * 70_000 + b"\r\n", b"Line too long"),
    ],
    ids=["150-lines", "a-70-KB-line"],
)
def test_heads_over_the_limits_are_refused(
    etl: ETL, framework: str, extra: bytes, words: bytes
) -> None:
    answer = raw_exchange(etl, put("/b/o", extra))
    if framework == "fastapi":  # (uvicorn has no such limit)
        assert status_of(answer) == 200 and answer.endswith(b"ABC")
    else:
        assert 400 <= status_of(answer) < 500
    if framework == "http":
        assert status_of(answer) == 431 and words in answer
    assert health_ok(etl)


def test_an_unsupported_version_is_refused(etl: ETL, framework: str) -> None:
    for version, expected in ((b"HTTP/2.0", 505), (b"HTTP/1.x", 400)):
        request = b"GET /health " + version + b"\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = raw_exchange(etl, request)
        if framework == "http":
            assert status_of(answer) == expected, answer[:200]
        elif framework == "flask":
            assert 400 <= status_of(answer) < 600, answer[:200]
        else:  # httptools reads any major.minor and uvicorn answers it as HTTP/1.1
            assert answer == b"" or status_of(answer) in (200, 400, 505), answer[:200]
    assert health_ok(etl)


def test_unusual_but_valid_heads_are_served(etl: ETL, framework: str) -> None:
    spaced = put("/b/spaced", b"X-Spaced:    padded value   \r\n")
    assert raw_exchange(etl, spaced).endswith(b"\r\n\r\nABC")
    lower = (
        b"PUT /b/lower HTTP/1.1\r\nhost: x\r\ncontent-length:  3 \r\nconnection: close\r\n\r\nxyz"
    )
    assert raw_exchange(etl, lower).endswith(b"\r\n\r\nXYZ")
    assert health_ok(etl)


def test_a_folded_header_line_is_joined_on_the_standard_library_server(
    etl: ETL, framework: str
) -> None:
    if framework != "http":
        pytest.skip("uvicorn and gunicorn decide folded lines themselves")
    answer = raw_exchange(etl, put("/b/folded", b"X-Folded: first\r\n  second\r\n"))
    assert status_of(answer) == 200 and answer.endswith(b"ABC")


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
    assert raw_exchange(etl, http10).endswith(b"C")  # answered, then closed (exchange returns)
