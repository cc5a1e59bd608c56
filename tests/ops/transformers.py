"""Transformers for the operations tests (metrics, logs, deadlines, memory).

``etl_args`` steers them: ``reject`` raises ``TransformError(415)``, ``fail`` raises
``ValueError`` (500), ``sleep=<s>`` sleeps first; anything else upper-cases the object.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

from aisetl import ETLServer, TransformError


def _steer(etl_args: str) -> None:
    if etl_args == "reject":
        raise TransformError(415, "unsupported input: asked to reject")
    if etl_args == "fail":
        raise ValueError("asked to fail")
    if etl_args.startswith("sleep="):
        time.sleep(float(etl_args.split("=", 1)[1]))


class Steered(ETLServer):
    """Buffered; reads the file when ``ETL_DIRECT_FQN`` passes a path."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        _steer(etl_args)
        if isinstance(data, str):
            with open(data, "rb") as file:
                data = file.read()
        return data.upper()


class SteeredStream(ETLServer):
    """Streaming; ``slow=<s>`` sleeps before each chunk."""

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        pause = float(etl_args.split("=", 1)[1]) if etl_args.startswith("slow=") else 0.0
        if not pause:
            _steer(etl_args)
        while True:
            if pause:
                time.sleep(pause)
            chunk = reader.read(64 * 1024)
            if not chunk:
                return
            yield chunk.upper()


class Pid(ETLServer):
    """Answers with the process ID of the worker that served the object."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        _steer(etl_args)
        return str(os.getpid()).encode()


class AsyncSleeper(ETLServer):
    """``async def transform`` that sleeps ``etl_args`` seconds; says when it is cancelled."""

    async def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:  # type: ignore[override]
        try:
            await asyncio.sleep(float(etl_args or "0"))
        except asyncio.CancelledError:
            self.logger.warning("async transform of %s was cancelled", path)
            raise
        self.logger.warning("async transform of %s ran to its end", path)
        assert isinstance(data, bytes)
        return data.upper()


class AsyncSleeperStream(ETLServer):
    """An async generator that sleeps ``etl_args`` seconds before its first chunk."""

    async def transform_stream(  # type: ignore[override]
        self, reader: BinaryIO, path: str, etl_args: str
    ) -> AsyncIterator[bytes]:
        try:
            await asyncio.sleep(float(etl_args or "0"))
        except asyncio.CancelledError:
            self.logger.warning("async transform of %s was cancelled", path)
            raise
        yield reader.read().upper()


class Leaky(ETLServer):
    """Logs its AIS_TARGET_URL (a secret) in a message and in an exception, as careless code may."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        self.logger.warning("talking to %s", self.host_target)
        if etl_args == "fail":
            raise RuntimeError(f"could not reach {self.host_target}")
        assert isinstance(data, bytes)
        return data.upper()
