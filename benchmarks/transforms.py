"""The benchmark's transforms as plain functions.

This module imports no SDK: the servers of both SDKs (ours in ``ours.py``, the reference's in
``reference_app.py``, run by another interpreter) call the same functions, and the harness
uses them to compute the bytes every answer must match.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import BinaryIO

#: Rounds of the pure-Python transform: about 10 ms of one core per object.
CPU_ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "2000"))
#: Extra bytes hashed by the GIL-releasing transform (hashlib drops the GIL on big buffers).
GIL_BYTES = int(os.environ.get("BENCH_GIL_BYTES", str(8 * 1024 * 1024)))
#: Chunk size of the streaming transform.
STREAM_CHUNK = 256 * 1024

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF
_ZEROS = bytes(GIL_BYTES)


def echo(data: bytes) -> bytes:
    """The object itself."""
    return data


def md5(data: bytes) -> bytes:
    """The object's MD5 as 32 hex digits."""
    return hashlib.md5(data).hexdigest().encode()


def cpu(data: bytes) -> bytes:
    """FNV-1a over the first 64 bytes, ``CPU_ROUNDS`` times, in pure Python (holds the GIL)."""
    value = _FNV_OFFSET
    sample = data[:64]
    for _ in range(CPU_ROUNDS):
        for byte in sample:
            value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return b"%016x" % value


def gil(data: bytes) -> bytes:
    """SHA-256 of the object followed by ``GIL_BYTES`` zeros (the hashing releases the GIL)."""
    digest = hashlib.sha256(data)
    digest.update(_ZEROS)
    return digest.hexdigest().encode()


def stream_echo(reader: BinaryIO) -> Iterator[bytes]:
    """The object itself, read and returned in chunks (never whole in memory)."""
    while True:
        chunk = reader.read(STREAM_CHUNK)
        if not chunk:
            return
        yield chunk


#: Buffered transforms by name; ``stream`` (streaming echo) expects what ``echo`` does.
BUFFERED = {"echo": echo, "md5": md5, "cpu": cpu, "gil": gil}
TRANSFORMS = (*BUFFERED, "stream")


def expected(name: str, data: bytes) -> bytes:
    """What transform ``name`` answers for ``data``."""
    return echo(data) if name == "stream" else BUFFERED[name](data)
