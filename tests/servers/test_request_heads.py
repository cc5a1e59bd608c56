"""Request heads at the edges of HTTP/1.1, on every server over a real socket.

The standard-library server reads header fields itself (:func:`aisetl.http11.read_header_fields`,
instead of the email parser the standard library uses): a head it cannot serve gets a 4xx in
the one error format, a valid head in an unusual shape is served as any other, and the server
keeps serving. gunicorn refuses the same heads. uvicorn (httptools) has no limit on the count
or length of header lines and serves such a head if it fits our cap on a head's bytes
(``aisetl._uvicorn_deadline.MAX_HEAD_BYTES``, 1 MiB); one that grows past it is refused.
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


def send_then_read(etl: ETL, request: bytes, timeout: float = 20.0) -> bytes:
    """Write ``request`` in pieces (the server may answer and close before it is all sent),
    then read what it answered until it closes."""
    address = urlsplit(etl.url())
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        try:
            for start in range(0, len(request), 64 * 1024):
                sock.sendall(request[start : start + 64 * 1024])
        except OSError:  # refused midway: the answer is waiting
            pass
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return received


@pytest.mark.parametrize(
    "endless",
    [
        b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"v" * 40) for i in range(50_000)),
        b"X-Huge: " + b"v" * (3 * 1024 * 1024),
    ],
    ids=["3-MB-of-lines", "a-3-MB-line"],
)
def test_a_head_that_grows_without_end_is_refused(etl: ETL, framework: str, endless: bytes) -> None:
    """Memory for a head is bounded: it is refused long before 3 MB (never completed)."""
    answer = send_then_read(etl, b"PUT /b/o HTTP/1.1\r\nHost: x\r\n" + endless)
    assert 400 <= status_of(answer) < 500, answer[:200]
    if framework == "fastapi":
        assert status_of(answer) == 431 and b"Request head too large" in answer
    assert health_ok(etl)


def test_a_large_head_within_the_limits_is_served(etl: ETL, framework: str) -> None:
    """90 header lines of 5,000 bytes (a head over several reads) and a body in the same write."""
    lines = b"".join(b"X-Big-%02d: %s\r\n" % (i, b"w" * 5000) for i in range(90))
    answer = send_then_read(etl, put("/b/big-head", lines, b"q" * 300_000))
    assert status_of(answer) == 200, answer[:200]
    assert answer.endswith(b"\r\n\r\n" + b"Q" * 300_000)


def chunked_put(path: str, trailers: bytes, body: bytes = b"abc") -> bytes:
    """A chunked PUT of ``body`` whose last chunk is followed by ``trailers``."""
    return (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n".encode()
        + b"%x\r\n%s\r\n0\r\n" % (len(body), body)
        + trailers
        + b"\r\n"
    )


def test_chunked_trailers_are_read_and_the_object_served(etl: ETL, framework: str) -> None:
    trailers = b"X-Checksum: 0123abcd\r\nX-Other: " + b"t" * 2000 + b"\r\n"
    answer = raw_exchange(etl, chunked_put("/b/trailed", trailers, b"q" * 5000))
    assert status_of(answer) == 200, answer[:200]
    assert answer.endswith(b"\r\n\r\n" + b"Q" * 5000)
    assert health_ok(etl)


@pytest.mark.parametrize(
    "endless",
    [
        b"".join(b"X-Trailer-%06d: %s\r\n" % (i, b"v" * 40) for i in range(50_000)),
        b"".join(b"X-T-%d: %s\r\n" % (i, b"v" * 4000) for i in range(60)),
        b"X-Huge: " + b"v" * 300_000 + b"\r\n",
    ],
    ids=["3-MB-of-trailer-lines", "240-KB-in-60-lines", "a-300-KB-trailer-line"],
)
def test_trailers_over_a_heads_limits_are_refused(etl: ETL, framework: str, endless: bytes) -> None:
    """A trailer section is bounded as a head is: more than 100 lines, or over 64 KiB.
    (uvicorn would add every trailer to the request's own headers.) gunicorn has bounds of its
    own: 100 lines of at most 8,190 bytes."""
    answer = send_then_read(etl, chunked_put("/b/trailers", endless))
    lines = endless.splitlines()
    if framework == "flask" and len(lines) <= 100 and max(map(len, lines)) <= 8190:
        assert status_of(answer) == 200 and answer.endswith(b"\r\n\r\nABC"), answer[:300]
    else:
        assert 400 <= status_of(answer) < 500, answer[:300]
    if framework != "flask":
        assert b"Invalid chunked body" in answer and b"trailer" in answer, answer[:300]
    assert health_ok(etl)


def test_a_body_error_after_the_reply_began_ends_the_connection_without_an_error_head(
    launch: Launcher, framework: str
) -> None:
    """A streaming reply is under way when the body turns out malformed: an error head written
    into the reply would read as part of the object, so the connection just ends, the reply
    unfinished (its last chunk never comes), and the client sees a broken reply."""
    etl = launch(f"stream-{framework}", "tests.transformers:UpperStream", framework, comm="hpush")
    piece = b"s" * 70_000
    head = b"PUT /b/streamed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection((etl.server().host, etl.server().port), timeout=20) as sock:
        sock.sendall(head + (b"%x\r\n%s\r\n" % (len(piece), piece)) * 4)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < 1000:  # the reply has begun
            chunk = sock.recv(65536)
            assert chunk, received[:300]
            received += chunk
        assert status_of(received) == 200
        sock.sendall(b"zz\r\n")  # not a chunk size
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    assert received.count(b"HTTP/1.1") == 1, received[-300:]
    assert not received.endswith(b"0\r\n\r\n")  # unfinished: the client knows it is broken
    assert health_ok(etl)
