"""Small HTTP/1.1 pieces the standard-library server needs: body framing and response heads."""

from __future__ import annotations

import io
import re
from http import HTTPStatus
from typing import BinaryIO

from aisetl.reply import Reply
from aisetl.sources import BodyDoesNotFit, BodyTooLarge, ClientGone, Failure

_MAX_CHUNK_LINE = 4096
#: The longest header line and the most header lines a request head may have (the limits of
#: the standard library's own header reader).
MAX_HEADER_LINE = 65536
MAX_HEADER_LINES = 100
#: The most bytes a chunked body's trailer section may have (its lines: at most
#: :data:`MAX_HEADER_LINES`).
MAX_TRAILER_BYTES = 65536
TRAILERS_TOO_LARGE = f"Invalid chunked body: its trailers are over {MAX_TRAILER_BYTES} bytes"
TOO_MANY_TRAILERS = f"Invalid chunked body: more than {MAX_HEADER_LINES} trailer lines"
#: Bytes a header name may not hold (anything but an RFC 9110 token character).
NOT_TOKEN = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_HEAD_END = (b"\r\n", b"\n", b"")


class HeadError(Exception):
    """A request head that cannot be served, with the status to answer and what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_header_fields(stream: BinaryIO) -> list[tuple[str, str]]:
    """The header fields of a request head, read up to its blank line (or the end of the stream).

    Values lose the whitespace around them; a line folded onto the next (obsolete, RFC 9112
    §5.2) is joined to its field with one space. Raises :class:`HeadError`: 431 for a line
    over :data:`MAX_HEADER_LINE` bytes or more than :data:`MAX_HEADER_LINES` lines, 400 for a
    line that is not ``Name: value``.
    """
    fields: list[tuple[str, str]] = []
    lines = 0
    while True:
        line = stream.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise HeadError(431, f"Line too long: a header line is over {MAX_HEADER_LINE} bytes")
        if line in _HEAD_END:
            return fields
        lines += 1
        if lines > MAX_HEADER_LINES:
            raise HeadError(431, f"Too many headers: more than {MAX_HEADER_LINES} lines")
        if line[0] in b" \t" and fields:  # folded: the field above goes on
            above, so_far = fields[-1]
            fields[-1] = (above, f"{so_far} {line.strip().decode('latin-1')}".strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or NOT_TOKEN.search(name):
            shown = line[:60].rstrip(b"\r\n")
            raise HeadError(400, f"Malformed header line {shown!r}: expected 'Name: value'")
        fields.append((name.decode("latin-1"), value.strip(b" \t\r\n").decode("latin-1")))


def reason(status: int) -> str:
    """The standard reason phrase of a status code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_head(status: int, headers: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """Status line and headers of an HTTP/1.1 response, ending with the blank line."""
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"HTTP/1.1 {status} {reason(status)}"]
    lines.extend(f"{name}: {value}" for name, value in items)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def serialize(reply: Reply) -> bytes:
    """A buffered reply as HTTP/1.1 bytes, for the places a framework lets us write raw."""
    headers = {**reply.headers, "Content-Length": str(len(reply.body))}
    return response_head(reply.status, headers) + reply.body


def parse_content_length(value: str) -> int:
    """Validate a Content-Length header; raises :class:`Failure` (400) when it is not a size."""
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise Failure(400, f"Invalid Content-Length {value!r}: expected a non-negative integer")
    return int(text)


class LengthBodyReader(io.RawIOBase):
    """Reads exactly ``length`` bytes of a request body."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.remaining <= 0:
            return 0
        want = min(len(buffer), self.remaining)
        data = (
            self._stream.read1(want) if hasattr(self._stream, "read1") else self._stream.read(want)
        )
        if not data:
            raise ClientGone(
                f"client closed the connection with {self.remaining} body bytes unsent"
            )
        size = len(data)
        buffer[:size] = data
        self.remaining -= size
        return size

    @property
    def finished(self) -> bool:
        """Whether the whole body has been read."""
        return self.remaining <= 0


class ChunkedBodyReader(io.RawIOBase):
    """Decodes a ``Transfer-Encoding: chunked`` request body, enforcing an optional size limit."""

    def __init__(self, stream: BinaryIO, limit: int = 0) -> None:
        self._stream = stream
        self._limit = limit
        self._left_in_chunk = 0
        self._total = 0
        self.finished = False

    def readable(self) -> bool:
        return True

    def _next_chunk_size(self) -> int:
        line = self._stream.readline(_MAX_CHUNK_LINE)
        if not line:
            raise ClientGone("client closed the connection inside a chunked body")
        if not line.endswith(b"\n"):
            raise Failure(400, "Invalid chunked body: chunk-size line too long")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Failure(400, f"Invalid chunked body: bad chunk size {size_text[:32]!r}") from None
        if size < 0:
            raise Failure(400, "Invalid chunked body: negative chunk size")
        return size

    def _finish(self) -> None:
        """Read (and drop) the trailer section, bounded as a head is, up to its empty line."""
        section = 0
        for _ in range(MAX_HEADER_LINES + 1):
            line = self._stream.readline(_MAX_CHUNK_LINE)
            if not line:
                raise ClientGone("client closed the connection inside chunked trailers")
            if line in (b"\r\n", b"\n"):
                self.finished = True
                return
            section += len(line)
            if section > MAX_TRAILER_BYTES:
                raise Failure(400, TRAILERS_TOO_LARGE)
        raise Failure(400, TOO_MANY_TRAILERS)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.finished:
            return 0
        if self._left_in_chunk == 0:
            size = self._next_chunk_size()
            if size == 0:
                self._finish()
                return 0
            self._total += size
            if self._limit and self._total > self._limit:
                raise BodyTooLarge(self._limit)
            self._left_in_chunk = size
        want = min(len(buffer), self._left_in_chunk)
        data = (
            self._stream.read1(want) if hasattr(self._stream, "read1") else self._stream.read(want)
        )
        if not data:
            raise ClientGone("client closed the connection inside a chunk")
        size = len(data)
        buffer[:size] = data
        self._left_in_chunk -= size
        if self._left_in_chunk == 0:
            crlf = self._stream.readline(_MAX_CHUNK_LINE)
            if crlf not in (b"\r\n", b"\n"):
                raise Failure(400, "Invalid chunked body: chunk data not followed by CRLF")
        return size


def chunk_frame(data: bytes) -> bytes:
    """One chunk of a chunked response body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


BodyReader = LengthBodyReader | ChunkedBodyReader
_DRAIN_LIMIT = 1024 * 1024


def body_reader(
    stream: BinaryIO, content_length: str | None, transfer_encoding: str | None, limit: int
) -> tuple[BodyReader | None, bool]:
    """The reader of a request body and whether the connection must close after it.

    Raises :class:`Failure` for a framing the server cannot read (501, 400, 413).
    """
    if transfer_encoding is not None:
        if transfer_encoding.split(",")[-1].strip().lower() != "chunked":
            raise Failure(
                501, f"Transfer-Encoding {transfer_encoding!r} is not supported; use chunked"
            )
        # Both framings at once: the body's end is ambiguous, so the connection ends with it.
        return ChunkedBodyReader(stream, limit), content_length is not None
    if content_length is None:
        return None, False
    length = parse_content_length(content_length)
    if limit and length > limit:
        raise BodyTooLarge(limit)
    return LengthBodyReader(stream, length), False


def read_all(stream: BinaryIO, raw: BodyReader) -> bytes:
    """The whole body, read into memory (a length-framed one in a single read)."""
    if isinstance(raw, LengthBodyReader):
        try:
            data = stream.read(raw.remaining)
        except (MemoryError, OverflowError):
            raise BodyDoesNotFit(raw.remaining) from None
        if len(data) < raw.remaining:
            raise ClientGone(
                f"client closed the connection, {raw.remaining - len(data)} body bytes unsent"
            )
        raw.remaining = 0
        return data
    parts: list[bytes] = []
    view = memoryview(bytearray(256 * 1024))
    while True:
        size = raw.readinto(view)
        if not size:
            return b"".join(parts)
        parts.append(bytes(view[:size]))


def drain(raw: BodyReader) -> bool:
    """Consume what a transform left of a body; ``False`` when the connection cannot be reused."""
    if raw.finished:  # (nearly always: the transform read its body)
        return True
    drained = 0
    buffer = memoryview(bytearray(64 * 1024))
    try:
        while not raw.finished:
            size = raw.readinto(buffer)
            drained += size
            if not size or drained > _DRAIN_LIMIT:
                break
    except (Failure, ClientGone, OSError):
        return False
    return raw.finished


#: Up to this many body bytes go out joined to what precedes them in one write (a copy);
#: larger ones are written as they are (two writes, no copy).
JOIN_LIMIT = 64 * 1024


def joined(head: bytes, body: bytes) -> tuple[bytes, ...]:
    """What to write for a head and the body bytes after it: one buffer when the body is
    small (one system call instead of two), else both as they are."""
    if len(body) <= JOIN_LIMIT:
        return (head + body,)
    return (head, body)


def write_reply(
    wfile: BinaryIO, reply: Reply, *, close: bool, chunked: bool = True, head_only: bool = False
) -> None:
    """Write a reply: ``Content-Length`` for bytes; a stream chunked, or to EOF (HTTP/1.0).

    A stream that raises :class:`Failure` after the head was written propagates it, so the
    caller can break the connection instead of ending the body.
    """
    headers = dict(reply.headers)
    if close:
        headers["Connection"] = "close"
    if reply.stream is None:
        headers["Content-Length"] = str(len(reply.body))
        head = response_head(reply.status, headers)
        for data in (head,) if head_only else joined(head, reply.body):
            wfile.write(data)
        return
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    wfile.write(response_head(reply.status, headers))
    try:
        for chunk in reply.stream:
            if not chunked:
                wfile.write(chunk)
            elif len(chunk) <= JOIN_LIMIT:
                wfile.write(chunk_frame(chunk))
            else:
                wfile.write(b"%x\r\n" % len(chunk))
                wfile.write(chunk)
                wfile.write(b"\r\n")
    except OSError:
        reply.close()
        raise
    if chunked:
        wfile.write(LAST_CHUNK)
