"""Transformers used by the wire tests; each server framework serves them via ``--server``.

``etl_args`` steers failure modes so one running server covers many cases:
``fail`` raises, ``reject`` raises ``TransformError(415)``, ``sleep=<s>`` sleeps first,
``empty`` returns nothing, ``fail-mid`` (streaming) fails after the first chunk,
``block=<s>:<file>`` (``AsyncUpper``) blocks its event loop for s seconds while the file exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from aisetl import ETLServer, Item, TransformError

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
        if etl_args.startswith("block="):  # blocks its event loop, as a transform must not
            seconds, _, marker = etl_args[len("block=") :].partition(":")
            Path(marker).touch()
            time.sleep(float(seconds))
            Path(marker).unlink()
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
    """``Upper``, except that objects whose name contains ``bad`` fail (after 0.5 s when it
    contains ``slow-bad``, so that what is sent just after is queued by then)."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if "bad" in path:
            if "slow-bad" in path:
                time.sleep(0.5)
            raise ValueError(f"asked to fail for {path}")
        assert isinstance(data, bytes)
        return upper(data)


class ShowDirectPut(ETLServer):
    """Answers with the ``direct_put`` setting the server read from its environment."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return str(self.direct_put).encode()


class BatchUpper(ETLServer):
    """``transform_batch``: each result is the object upper-cased, a newline, then its batch as
    JSON (``{"size": n, "paths": [...]}``), so a test sees which objects ran together.

    Per item, ``etl_args`` ``fail`` returns a ValueError and ``reject`` a TransformError(415);
    for the whole batch, ``short`` returns one result too few, ``raise`` raises and
    ``sleep=<s>`` sleeps first.
    """

    def transform_batch(self, items: list[Item]) -> list[bytes | Exception]:
        args = {item.etl_args for item in items}
        for arg in args:
            if arg.startswith("sleep="):
                time.sleep(float(arg.split("=", 1)[1]))
        if "raise" in args:
            raise RuntimeError("the whole batch failed")
        seen = json.dumps({"size": len(items), "paths": sorted(i.path for i in items)}).encode()
        results: list[bytes | Exception] = []
        for item in items:
            if item.etl_args == "fail":
                results.append(ValueError(f"cannot transform {item.path}"))
            elif item.etl_args == "reject":
                results.append(TransformError(415, f"unsupported input: {item.path}"))
            else:
                data = item.data
                if isinstance(data, str):
                    with open(data, "rb") as file:
                        data = file.read()
                results.append(upper(data) + b"\n" + seen)
        return results[:-1] if "short" in args else results


def batch_of(content: bytes) -> dict[str, object]:
    """The batch a :class:`BatchUpper` result says its object ran in."""
    seen: dict[str, object] = json.loads(content.rsplit(b"\n", 1)[1])
    return seen


class BatchPlainUpper(ETLServer):
    """``transform_batch`` that upper-cases each object (the same answer in any batch)."""

    def transform_batch(self, items: list[Item]) -> list[bytes]:
        return [upper(item.data) if isinstance(item.data, bytes) else b"" for item in items]


class ShowGpu(ETLServer):
    """Says which GPUs its process saw when it was built and sees now (``AISETL_GPUS`` tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        self.logger.info("built in pid %d seeing CUDA_VISIBLE_DEVICES=%s", os.getpid(), self.seen)

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        now = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        return f"{os.getpid()}|{self.seen}|{now}".encode()
