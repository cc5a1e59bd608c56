"""WholeRequestParser: a read is taken only when it is exactly one whole request it covers;
everything else is left, untouched, to uvicorn's parser."""

from __future__ import annotations

import pytest

from aisetl.whole_request import WholeRequestParser


def _put(
    target: str = "/b/o", body: bytes = b"abc", extra: str = "", version: str = "1.1"
) -> bytes:
    head = f"PUT {target} HTTP/{version}\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_one_whole_request_is_taken_with_its_head_and_body() -> None:
    parser = WholeRequestParser()
    assert parser.take(_put("/ais/@%23b/o%201?etl_args=x", b"payload", "User-Agent: Go\r\n"))
    assert parser.method == "PUT"
    assert parser.target == b"/ais/@%23b/o%201?etl_args=x"
    assert parser.headers == [
        (b"host", b"x"),
        (b"content-length", b"7"),
        (b"user-agent", b"Go"),
    ]
    assert parser.body == b"payload"
    assert parser.keep_alive


def test_the_parser_is_reused_for_the_next_read() -> None:
    parser = WholeRequestParser()
    assert parser.take(_put("/b/first", b"one"))
    assert parser.take(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (parser.method, parser.target, parser.body) == ("GET", b"/health", b"")
    assert parser.headers == [(b"host", b"x")]


@pytest.mark.parametrize(
    ("extra", "version", "keep_alive"),
    [("", "1.1", True), ("Connection: close\r\n", "1.1", False), ("", "1.0", False)],
)
def test_keep_alive_is_read_before_the_parser_forgets_it(
    extra: str, version: str, keep_alive: bool
) -> None:
    parser = WholeRequestParser()
    assert parser.take(_put(extra=extra, version=version))
    assert parser.keep_alive is keep_alive


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_put() + _put("/b/second"), id="two requests"),
        pytest.param(_put() + b"PUT /b/partial HTTP/1.1\r\n", id="a request and part of one"),
        pytest.param(_put(body=b"abcdef")[:-2], id="a body cut short"),
        pytest.param(_put()[:20], id="a head cut short"),
        pytest.param(_put(extra="Expect: 100-continue\r\n"), id="expect 100-continue"),
        pytest.param(_put("http://host/b/o"), id="an absolute target"),
        pytest.param(_put("/b/o#frag"), id="a fragment"),
        pytest.param(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            id="an upgrade",
        ),
        pytest.param(
            b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc",
            id="a declared length over the read",
        ),
        pytest.param(
            b"PUT /b/o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            id="a chunked body not yet complete",
        ),
        pytest.param(
            b"PUT /b/o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
            id="trailer fields",
        ),
        pytest.param(
            b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc", id="bad length"
        ),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="garbage"),
    ],
)
def test_what_is_not_one_whole_request_is_not_taken(data: bytes) -> None:
    assert not WholeRequestParser().take(data)


def test_a_whole_chunked_request_is_taken() -> None:
    parser = WholeRequestParser()
    wire = (
        b"PUT /b/o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert parser.take(wire)
    assert parser.body == b"abc"
