"""Compress or decompress objects with gzip, bzip2 or Zstandard, streaming.

Both directions work piece by piece, so memory stays constant whatever the object size (a
decompressed object of many gigabytes is produced in bounded pieces, too).

``etl_args`` chooses what to do, as JSON or as a comma-separated shorthand in any order::

    {"mode": "compress", "algorithm": "zstd", "level": 19}    same as  zstd,19
    {"mode": "decompress"}                                     same as  decompress

Arguments (all optional):

* ``mode``: ``compress`` or ``decompress``.
* ``algorithm``: ``gzip``, ``bz2`` or ``zstd``; when decompressing also ``auto`` (the default),
  which recognizes the format from the first bytes.
* ``level``: compression level: gzip 0-9 (default 6), bz2 1-9 (default 9), zstd 1-22
  (default 3).

Requests without ``etl_args`` (offline bucket-to-bucket jobs carry none) do what the environment
says: ``MODE``, ``ALGORITHM`` and ``LEVEL``, with the same values and defaults.

Bad arguments are answered with status 400, data not in the expected format with 415, a damaged
stream with 422 (or, once output has started, with a broken connection, so the target never
stores a truncated object).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import zstandard

from aisetl import ConfigError, TransformError
from aisetl.fastapi_server import FastAPIServer

CHUNK = 256 * 1024
MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "zstd": b"\x28\xb5\x2f\xfd"}
LEVELS = {"gzip": (0, 9, 6), "bz2": (1, 9, 9), "zstd": (1, 22, 3)}  # min, max, default
MODES = ("compress", "decompress")
ARGUMENTS = ("mode", "algorithm", "level")


def parse_args(text: str) -> dict[str, Any]:
    """The arguments in ``etl_args``: a JSON object or ``decompress,zstd``-style shorthand."""
    text = text.strip()
    if text.startswith("{"):
        try:
            args = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TransformError(400, f"etl_args is not valid JSON: {exc}") from None
    else:
        args = {}
        for token in filter(None, (t.strip().lower() for t in text.split(","))):
            key = "mode" if token in MODES else "level" if token.isdigit() else "algorithm"
            args[key] = int(token) if key == "level" else token
    return check_args(args)


def check_args(args: dict[str, Any]) -> dict[str, Any]:
    """Validate the arguments and fill in the defaults: ``mode``, ``algorithm``, ``level``."""
    unknown = sorted(set(args) - set(ARGUMENTS))
    if unknown:
        raise TransformError(
            400, f"unknown argument {unknown[0]!r}: expected {', '.join(ARGUMENTS)}"
        )
    mode, algorithm, level = (args.get(key) for key in ARGUMENTS)
    mode = mode or "compress"
    if mode not in MODES:
        raise TransformError(400, f"mode must be compress or decompress, not {mode!r}")
    if algorithm is None:
        algorithm = "gzip" if mode == "compress" else "auto"
    choices = [*LEVELS, "auto"] if mode == "decompress" else list(LEVELS)
    if algorithm not in choices:
        raise TransformError(
            400, f"cannot {mode} {algorithm!r}: choose one of {', '.join(choices)}"
        )
    if mode == "compress":
        low, high, default = LEVELS[algorithm]
        level = default if level is None else level
        if type(level) is not int or not low <= level <= high:
            raise TransformError(400, f"{algorithm} level must be {low} to {high}, not {level!r}")
    return {"mode": mode, "algorithm": algorithm, "level": level}


def compress(reader: BinaryIO, algorithm: str, level: int) -> Iterator[bytes]:
    """Compressed pieces of everything ``reader`` yields."""
    if algorithm == "gzip":
        compressor: Any = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
    elif algorithm == "bz2":
        compressor = bz2.BZ2Compressor(level)
    else:
        compressor = zstandard.ZstdCompressor(level=level).compressobj()
    while chunk := reader.read(CHUNK):
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


class _Peeked(io.RawIOBase):
    """A reader whose first bytes were read already, to recognize the format."""

    def __init__(self, reader: BinaryIO, size: int = 4) -> None:
        self._reader = reader
        self.head = b""
        while len(self.head) < size and (more := reader.read(size - len(self.head))):
            self.head += more
        self._pending = self.head

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._pending or self._reader.read(len(buffer))
        size = min(len(data), len(buffer))
        buffer[:size], self._pending = data[:size], data[size:]
        return size


def decompress(reader: BinaryIO, algorithm: str) -> Iterator[bytes]:
    """Decompressed pieces (at most ``CHUNK`` bytes each) of the data in ``reader``."""
    peeked = _Peeked(reader)
    if algorithm == "auto":
        found = [name for name, magic in MAGIC.items() if peeked.head.startswith(magic)]
        if not found:
            raise TransformError(415, "not gzip, bz2 or zstd data (unknown first bytes)")
        algorithm = found[0]
    elif not peeked.head.startswith(MAGIC[algorithm]):
        raise TransformError(415, f"not {algorithm} data (wrong first bytes)")
    source = io.BufferedReader(peeked, CHUNK)
    if algorithm == "gzip":
        stream: Any = gzip.GzipFile(fileobj=source, mode="rb")
    elif algorithm == "bz2":
        stream = bz2.BZ2File(source)
    else:
        stream = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise TransformError(422, f"damaged {algorithm} data: {exc}") from None


class CompressServer(FastAPIServer):
    """Compresses or decompresses each object as ``etl_args`` (or the environment) says."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host, port)
        env: dict[str, Any] = {key: os.environ.get(key.upper(), "").strip() for key in ARGUMENTS}
        if env["level"].isdigit():
            env["level"] = int(env["level"])
        try:
            self.default_args = check_args(
                {key: value for key, value in env.items() if value != ""}
            )
        except TransformError as exc:
            raise ConfigError(f"MODE / ALGORITHM / LEVEL: {exc.message}") from None

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        args = parse_args(etl_args) if etl_args.strip() else self.default_args
        if args["mode"] == "compress":
            return compress(reader, args["algorithm"], args["level"])
        return decompress(reader, args["algorithm"])
