"""Streaming servers for the frame-by-frame WebSocket tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from aisetl import ETLServer


class HeadOnly(ETLServer):
    """Answers the first 10 bytes and leaves the rest of the object unread."""

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        yield reader.read(10)


class FailMidway(ETLServer):
    """Sends 2 MiB of the object, then fails."""

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        yield reader.read(2 * 1024 * 1024)
        raise RuntimeError("failed after the first part")
