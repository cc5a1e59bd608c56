"""The benchmark's transforms as aisetl servers (``python -m aisetl serve benchmarks.ours:Echo``).

Plain :class:`aisetl.ETLServer` subclasses: ``--server`` picks the framework at serve time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from aisetl import ETLServer, Item
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


class AsyncSleep(ETLServer):
    """An ``async`` transform that waits ``etl_args`` seconds (default 1), then echoes."""

    async def transform(self, data: bytes, path: str, etl_args: str) -> bytes:  # type: ignore[override]
        await asyncio.sleep(float(etl_args or 1))
        return data


class SyncSleep(ETLServer):
    """A synchronous transform that waits ``etl_args`` seconds (default 1), then echoes."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        time.sleep(float(etl_args or 1))
        return data


def _speech_model() -> Any:
    """The speech_detect example's model module (imported only by the servers that use it)."""
    folder = str(Path(__file__).resolve().parents[1] / "examples" / "speech_detect")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import speech_model

    return speech_model


class _SpeechModel(ETLServer):
    """Loads the speech_detect example's model in ``__init__``."""

    def __init__(self) -> None:
        super().__init__()
        self.vad = _speech_model()
        self.model = self.vad.SpeechModel()


class Speech(_SpeechModel):
    """The speech_detect example's model, fed batches (``transform_batch``)."""

    max_batch_size = 32
    max_batch_delay = 0.01

    def transform_batch(self, items: list[Item]) -> list[bytes]:
        clips = [self.vad.decode(item.data) for item in items]
        return [found.to_json() for found in self.model.detect(clips)]


class SpeechPerObject(_SpeechModel):
    """The same model, one call per object: what a transformer without batching does."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        found = self.model.detect([self.vad.decode(data)])[0]
        result: bytes = found.to_json()
        return result


#: Server class name by transform name.
CLASSES = {
    "echo": "Echo",
    "md5": "Md5",
    "cpu": "Cpu",
    "gil": "Gil",
    "stream": "Stream",
    "async-sleep": "AsyncSleep",
    "sync-sleep": "SyncSleep",
    "speech": "Speech",
    "speech-per-object": "SpeechPerObject",
}
