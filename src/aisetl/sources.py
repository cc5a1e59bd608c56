"""Where an object's bytes come from: a local file (FQN), the request body, or the target.

Each source can load the whole object (buffered transforms) or open a reader (streaming
transforms); replayable sources can be opened again when a direct put must be retried.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import urllib3

from aisetl.memory import memory_limit
from aisetl.outbound import OutboundClient, describe_error, redact_url
from aisetl.protocol import upstream_url

READ_CHUNK = 256 * 1024
#: Local files up to this size may be read on an event loop (page-cached: microseconds).
SMALL_FILE = 64 * 1024


class Failure(Exception):
    """A request cannot be served: answer with ``status`` and a message naming the cause."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class BodyTooLarge(Failure):
    """The request body is over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"Request body is larger than the {limit}-byte limit (AISETL_MAX_BODY_SIZE); "
            "raise the limit or use a streaming transform",
        )


class BodyDoesNotFit(Failure):
    """A buffered transform's request body is larger than this process's memory can ever be."""

    def __init__(self, length: int) -> None:
        super().__init__(
            413,
            f"Request body of {length} bytes cannot be held in this server's memory "
            f"({memory_limit() or 0} bytes); use a streaming transform (transform_stream) "
            "or give the container more memory",
        )


def check_fits_in_memory(length: int) -> None:
    """Raise :class:`BodyDoesNotFit` for a body a buffered transform could never hold."""
    limit = memory_limit()
    if limit is not None and length > limit:
        raise BodyDoesNotFit(length)


class ClientGone(Exception):
    """The peer disconnected before the request body was complete."""


class Source:
    """An object's bytes, from wherever the target made them available."""

    replayable = True

    def load(self) -> bytes:
        """Read the whole object."""
        with self.open() as reader:
            return reader.read()

    def open(self) -> BinaryIO:
        """Open a reader positioned at the object's first byte."""
        raise NotImplementedError


@dataclass
class FileSource(Source):
    """A local file whose path the target passed (``etl_fqn`` or ws ``fqn``)."""

    path: str

    def open(self) -> BinaryIO:
        self._check_name()
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise Failure(404, f"Object file not found: no file at {self.path!r}") from None
        except IsADirectoryError:
            raise Failure(
                400, f"etl_fqn names a directory, not an object file: {self.path!r}"
            ) from None
        except OSError as exc:
            raise Failure(
                500, f"Cannot read object file {self.path!r}: {exc.strerror or exc}"
            ) from None

    def _check_name(self) -> None:
        """A 400 for a path no file can have (a ws control message may hold any string)."""
        try:
            os.fsencode(self.path)
        except UnicodeEncodeError as exc:
            raise Failure(
                400, f"etl_fqn {self.path!r} cannot name a file: {exc.reason} at {exc.start}"
            ) from None

    def load(self) -> bytes:
        with self.open() as reader:
            try:
                return reader.read()
            except OSError as exc:
                raise Failure(500, f"Cannot read object file {self.path!r}: {exc}") from None

    def is_small(self) -> bool:
        """Whether the file is small enough to read without leaving an event loop."""
        try:
            info = os.stat(self.path)
        except (OSError, ValueError):
            return True  # reading it fails at once, with the right answer
        return stat.S_ISREG(info.st_mode) and info.st_size <= SMALL_FILE

    def check(self) -> str:
        """Return the path after making sure it is a readable file (``ETL_DIRECT_FQN`` mode)."""
        self._check_name()
        if not os.path.isfile(self.path):
            if os.path.isdir(self.path):
                raise Failure(400, f"etl_fqn names a directory, not an object file: {self.path!r}")
            raise Failure(404, f"Object file not found: no file at {self.path!r}")
        return self.path


@dataclass
class BytesSource(Source):
    """A request body (or ws payload) already read into memory."""

    data: bytes

    def load(self) -> bytes:
        return self.data

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


class StreamSource(Source):
    """A request body read as it arrives: one-shot, it cannot be replayed."""

    replayable = False

    def __init__(self, reader: BinaryIO) -> None:
        self._reader = reader
        self._opened = False

    def open(self) -> BinaryIO:
        if self._opened:
            raise RuntimeError("a request body can be read only once")
        self._opened = True
        return self._reader

    def load(self) -> bytes:
        with self.open() as reader:
            return reader.read()


class _UpstreamReader(io.RawIOBase):
    """Reader over a streamed GET response; closing it returns the connection to the pool.

    A response not read to its end (the transform stopped early) closes its connection
    first: the rest of the body would otherwise be read as the next response on it.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str) -> None:
        self._response = response
        self._url = url
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._response.read(len(buffer))
        except Exception as exc:
            raise Failure(
                502, f"Reading the object from the target failed: {describe_error(exc)}"
            ) from exc
        buffer[: len(data)] = data
        if not data and len(buffer):
            self._ended = True
        return len(data)

    def close(self) -> None:
        if not self.closed:
            if not self._ended:
                self._response.close()
            self._response.release_conn()
        super().close()


def upstream_unreachable(url: str, error: str) -> Failure:
    """The hpull GET from the target got no answer."""
    return Failure(502, f"GET from the target failed ({redact_url(url)}): {error}")


def upstream_refused(status: int, body: bytes) -> Failure:
    """The target answered the hpull GET with an error status."""
    detail = body[:4096].decode("utf-8", "replace").strip()
    return Failure(
        status, f"Target answered {status} to GET of the object" + (f": {detail}" if detail else "")
    )


def upstream_read_failed(error: str) -> Failure:
    """The object's bytes stopped arriving from the target."""
    return Failure(502, f"Reading the object from the target failed: {error}")


@dataclass
class UpstreamSource(Source):
    """The object fetched from the local target (hpull without FQN)."""

    client: OutboundClient
    target_url: str
    path: str
    query: str = ""  # e.g. latest-ver=true, passed on from the target's request

    def url(self) -> str:
        """The GET's URL: ``AIS_TARGET_URL/<escaped uname>[?query]``."""
        url = upstream_url(self.target_url, self.path)
        return f"{url}?{self.query}" if self.query else url

    def _request(self) -> urllib3.BaseHTTPResponse:
        url = self.url()
        try:
            response = self.client.get(url)
        except Exception as exc:
            raise upstream_unreachable(url, describe_error(exc)) from exc
        if response.status >= 400:
            detail = response.read(4096)
            response.release_conn()
            raise upstream_refused(response.status, detail)
        return response

    def open(self) -> BinaryIO:
        response = self._request()
        return io.BufferedReader(_UpstreamReader(response, self.path), READ_CHUNK)

    def load(self) -> bytes:
        response = self._request()
        try:
            return response.read()
        except Exception as exc:
            raise upstream_read_failed(describe_error(exc)) from exc
        finally:
            response.release_conn()


class IteratorReader(io.RawIOBase):
    """A raw reader over an iterator of byte chunks (a request body as it arrives)."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] | None = None) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        if not self.closed and self._on_close is not None:
            self._on_close()
        super().close()


def buffered_reader(raw: io.RawIOBase) -> BinaryIO:
    """Wrap a raw reader so transforms get the whole file API (read, readline, iteration)."""
    return io.BufferedReader(raw, READ_CHUNK)
