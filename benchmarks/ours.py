"""The benchmark's transforms as aisetl servers (``python -m aisetl serve benchmarks.ours:Echo``).

Plain :class:`aisetl.ETLServer` subclasses: ``--server`` picks the framework at serve time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from aisetl import ETLServer
from benchmarks import transforms


class Echo(ETLServer):
    """Returns the object."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return transforms.echo(data)


class Md5(ETLServer):
    """Returns the object's MD5 (hex)."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return transforms.md5(data)


class Cpu(ETLServer):
    """About 10 ms of pure Python per object."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return transforms.cpu(data)


class Gil(ETLServer):
    """Hashes a big buffer (hashlib releases the GIL)."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return transforms.gil(data)


class Stream(ETLServer):
    """Streaming echo: the object passes through in chunks."""

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        yield from transforms.stream_echo(reader)


#: Server class name by transform name.
CLASSES = {"echo": "Echo", "md5": "Md5", "cpu": "Cpu", "gil": "Gil", "stream": "Stream"}
