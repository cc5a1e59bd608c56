"""read_header_fields: the header fields of a request head, and the heads it refuses."""

from __future__ import annotations

import io

import pytest

from aisetl.http11 import MAX_HEADER_LINE, MAX_HEADER_LINES, HeadError, read_header_fields


def fields(head: bytes) -> list[tuple[str, str]]:
    stream = io.BytesIO(head + b"the body")
    found = read_header_fields(stream)
    assert stream.read() == b"the body"  # the body is left where it was
    return found


def test_fields_in_order_with_their_whitespace_trimmed() -> None:
    head = b"Host: x\r\nContent-Length:\t 8 \r\nX-Empty:\r\nx-dup: 1\r\nX-Dup: 2\r\n\r\n"
    assert fields(head) == [
        ("Host", "x"), ("Content-Length", "8"), ("X-Empty", ""), ("x-dup", "1"), ("X-Dup", "2"),
    ]  # fmt: skip


def test_a_folded_line_joins_its_field_with_one_space() -> None:
    assert fields(b"X-A: one\r\n   two\r\n\tthree\r\nX-B: b\r\n\r\n") == [
        ("X-A", "one two three"),
        ("X-B", "b"),
    ]


def test_bare_newlines_and_the_end_of_the_stream_end_the_head() -> None:
    assert fields(b"Host: x\n\n") == [("Host", "x")]
    assert read_header_fields(io.BytesIO(b"Host: x\r\n")) == [("Host", "x")]


@pytest.mark.parametrize(
    ("head", "status", "words"),
    [
        (b"no colon here\r\n\r\n", 400, "Malformed header line"),
        (b": no name\r\n\r\n", 400, "Malformed header line"),
        (b"Bad Name: v\r\n\r\n", 400, "Malformed header line"),
        (b"  folded before any field\r\n\r\n", 400, "Malformed header line"),
        (b"X: " + b"v" * MAX_HEADER_LINE + b"\r\n\r\n", 431, "Line too long"),
        (b"X: v\r\n" * (MAX_HEADER_LINES + 1) + b"\r\n", 431, "Too many headers"),
    ],
)
def test_heads_that_cannot_be_served(head: bytes, status: int, words: str) -> None:
    with pytest.raises(HeadError) as raised:
        read_header_fields(io.BytesIO(head))
    assert raised.value.status == status
    assert words in raised.value.message


def test_as_many_lines_as_allowed_are_read() -> None:
    head = b"X: v\r\n" * MAX_HEADER_LINES + b"\r\n"
    assert len(read_header_fields(io.BytesIO(head))) == MAX_HEADER_LINES
