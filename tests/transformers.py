"""Transformers used by the wire tests; each server framework serves them via ``--server``.

``etl_args`` steers failure modes so one running server covers many cases:
``fail`` raises, ``reject`` raises ``TransformError(415)``, ``sleep=<s>`` sleeps first,
``empty`` returns nothing, ``fail-mid`` (streaming) fails after the first chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

from aisetl import ETLServer, TransformError

CHUNK = 64 * 1024


def _apply_args(etl_args: str) -> None:
    if etl_args == "fail":
        raise ValueError("asked to fail")
    if etl_args == "reject":
        raise TransformError(415, "unsupported input: asked to reject")
    if etl_args.startswith("sleep="):
        time.sleep(float(etl_args.split("=", 1)[1]))


def upper(data: bytes) -> bytes:
    """The test transform: ASCII upper case (byte-exact on any binary input)."""
    return data.upper()


class Upper(ETLServer):
    """Buffered; reads the file itself when ``ETL_DIRECT_FQN`` hands it a path."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        _apply_args(etl_args)
        if isinstance(data, str):
            with open(data, "rb") as file:
                data = file.read()
        if etl_args == "empty":
            return b""
        return upper(data)


class UpperStream(ETLServer):
    """Streaming, constant memory."""

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        _apply_args(etl_args)
        first = True
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                return
            if etl_args == "empty":
                continue
            yield upper(chunk)
            if etl_args == "fail-mid" and first:
                raise RuntimeError("failed after the first chunk")
            first = False


class AsyncUpper(ETLServer):
    """``async def transform``."""

    async def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:  # type: ignore[override]
        await asyncio.sleep(0)
        if etl_args == "fail":
            raise ValueError("asked to fail")
        assert isinstance(data, bytes)
        return upper(data)


class AsyncUpperStream(ETLServer):
    """An async generator ``transform_stream``."""

    async def transform_stream(  # type: ignore[override]
        self, reader: BinaryIO, path: str, etl_args: str
    ) -> AsyncIterator[bytes]:
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                return
            await asyncio.sleep(0)
            yield upper(chunk)


class Describe(ETLServer):
    """Echoes what it was given: the path and etl_args, as text."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        kind = "str" if isinstance(data, str) else "bytes"
        return f"{kind}|{path}|{etl_args}".encode("utf-8", "surrogateescape")


class Suffix(ETLServer):
    """Appends ``!``: tells pipeline stages apart from ``Upper``."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        assert isinstance(data, bytes)
        return data + b"!"


class CpuHeavy(ETLServer):
    """Fixed pure-Python work: ``etl_args`` thousand rounds (default 2000, about 0.1 s)."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        rounds = int(etl_args or "2000") * 1000
        if sum(i & 1 for i in range(rounds)) < 0:  # pure-Python work; never true
            raise AssertionError
        assert isinstance(data, bytes)
        return data


class FailNamed(ETLServer):
    """``Upper``, except that objects whose name contains ``bad`` fail."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if "bad" in path:
            raise ValueError(f"asked to fail for {path}")
        assert isinstance(data, bytes)
        return upper(data)


class ShowDirectPut(ETLServer):
    """Answers with the ``direct_put`` setting the server read from its environment."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return str(self.direct_put).encode()
