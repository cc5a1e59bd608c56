"""WSGI body and request-target I/O for the Flask adapter (gunicorn's environ, read raw)."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

from aisetl._gunicorn import current_headers
from aisetl.edge import Headers
from aisetl.sized_body import SizedBody
from aisetl.sources import BodyTooLarge, ClientGone

Environ = dict[str, Any]


#: Largest single read of a body read straight from gunicorn's socket.
RECV_CHUNK = 1024 * 1024


def read_exactly(stream: Any, length: int) -> bytes:
    """A body of ``length`` bytes from ``wsgi.input`` (straight from the socket under gunicorn)."""
    data = _from_socket(stream, length) if length else b""
    if data is None:
        data = stream.read(length)
    if len(data) < length:
        raise ClientGone(
            f"client closed the connection with {length - len(data)} body bytes unsent"
        )
    return data


def _from_socket(stream: Any, length: int) -> bytes | None:
    """gunicorn's body, read from its socket straight into one buffer of its size.

    (gunicorn's own ``read`` passes every piece through two more buffers: five copies of a
    16 MiB body instead of one.) ``None`` when ``stream`` is not an untouched gunicorn body
    of exactly that length; then the caller reads it the ordinary way.
    """
    reader = getattr(stream, "reader", None)
    unreader = getattr(reader, "unreader", None)
    sock = getattr(unreader, "sock", None)
    pending = getattr(unreader, "buf", None)
    own = getattr(stream, "buf", None)
    if (
        type(reader).__name__ != "LengthReader"
        or getattr(reader, "length", None) != length
        or sock is None
        or not isinstance(pending, io.BytesIO)
        or not isinstance(own, io.BytesIO)
        or own.tell()
    ):
        return None
    first = pending.getvalue()
    body = SizedBody(length)
    body.add(first[:length])
    unreader.buf = io.BytesIO()  # type: ignore[union-attr]
    unreader.buf.write(first[length:])  # type: ignore[union-attr]
    while body.size < length and body.receive(sock, RECV_CHUNK):
        pass
    reader.length = length - body.size  # type: ignore[union-attr]
    return body.value()


class WSGIInputReader(io.RawIOBase):
    """A reader of ``wsgi.input`` that stops at the body's end and enforces the size limit."""

    def __init__(self, stream: Any, length: int | None, limit: int) -> None:
        self._stream = stream
        self._remaining = length
        self._limit = limit
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer) if self._remaining is None else min(len(buffer), self._remaining)
        if want <= 0:
            return 0
        data = self._stream.read(want)
        if not data:
            if self._remaining:
                raise ClientGone("client closed the connection before the body was complete")
            return 0
        size = len(data)
        self._size += size
        if self._limit and self._size > self._limit:
            raise BodyTooLarge(self._limit)
        if self._remaining is not None:
            self._remaining -= size
        buffer[:size] = data
        return size


def request_headers(environ: Environ) -> Headers:
    """The request's headers, each copy apart when gunicorn's worker kept them (ours does)."""
    raw = current_headers()
    if raw is not None:
        return Headers(raw)
    items = [
        (key[5:].replace("_", "-"), value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        if key in environ:
            items.append((key.replace("_", "-"), environ[key]))
    return Headers(items)


def raw_target(environ: Environ) -> tuple[str, str]:
    """The request path as sent (still escaped) and the raw query string."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if "://" in raw.split("?", 1)[0]:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        path, _, query = raw.partition("?")
        return path, query
    path_info = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "surrogateescape")
    return quote(path_info, safe="/@", errors="surrogateescape"), environ.get("QUERY_STRING", "")
