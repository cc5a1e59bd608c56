"""Compression round trips through the server and through the standard tools, and clear errors."""

from __future__ import annotations

import bz2
import gzip
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from aisetl.testing import LocalETL, serve

SERVER = str(Path(__file__).with_name("server.py"))
# Compressible but not trivial: random words, several times the server's 256 KiB read size.
_random = random.Random(7)
WORDS = [_random.randbytes(4).hex().encode() for _ in range(500)]
DATA = b" ".join(_random.choice(WORDS) for _ in range(120_000))  # about 1 MiB
DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "bz2": bz2.decompress,
    "zstd": lambda blob: zstandard.ZstdDecompressor().stream_reader(blob).read(),
}
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    with serve(SERVER) as running:
        yield running


@pytest.mark.parametrize("algorithm", ["gzip", "bz2", "zstd"])
def test_compress_then_decompress(etl: LocalETL, mode: dict[str, Any], algorithm: str) -> None:
    packed = etl.transform(DATA, path="bucket/words.txt", etl_args=algorithm, **mode)
    assert len(packed) < len(DATA) // 2
    assert DECOMPRESS[algorithm](packed) == DATA  # readable by the standard tools
    unpacked = etl.transform(packed, path="bucket/words.txt.z", etl_args="decompress", **mode)
    assert unpacked == DATA


@pytest.mark.parametrize("algorithm", ["gzip", "bz2", "zstd"])
def test_decompress_what_the_standard_tools_made(etl: LocalETL, algorithm: str) -> None:
    blob = COMPRESS[algorithm](DATA)
    assert etl.transform(blob, etl_args="decompress") == DATA
    assert (
        etl.transform(blob, etl_args=f'{{"mode": "decompress", "algorithm": "{algorithm}"}}')
        == DATA
    )


def test_concatenated_members_and_frames(etl: LocalETL) -> None:
    for algorithm in COMPRESS:
        blob = COMPRESS[algorithm](b"first part, ") + COMPRESS[algorithm](b"second part")
        assert etl.transform(blob, etl_args="decompress") == b"first part, second part"


def test_levels_change_the_output(etl: LocalETL) -> None:
    fast = etl.transform(DATA, etl_args="zstd,1")
    small = etl.transform(DATA, etl_args='{"algorithm": "zstd", "level": 19}')
    assert len(small) < len(fast)
    assert DECOMPRESS["zstd"](small) == DATA


def test_empty_object(etl: LocalETL) -> None:
    packed = etl.transform(b"", etl_args="gzip")
    assert gzip.decompress(packed) == b""
    assert etl.transform(packed, etl_args="decompress") == b""


@pytest.mark.parametrize(
    ("data", "etl_args", "status", "message"),
    [
        (DATA, "gzip,12", 400, "gzip level must be 0 to 9"),
        (DATA, "lzma", 400, "cannot compress 'lzma'"),
        (DATA, '{"mode": "inflate"}', 400, "mode must be compress or decompress"),
        (DATA, '{"method": "gzip"}', 400, "unknown argument 'method'"),
        (DATA, "decompress", 415, "not gzip, bz2 or zstd data"),
        (gzip.compress(DATA), "decompress,zstd", 415, "not zstd data"),
        (gzip.compress(DATA)[:2000], "decompress", 422, "damaged gzip data"),
        (b"BZh9" + bytes(100), "decompress", 422, "damaged bz2 data"),
    ],
)
def test_errors(
    etl: LocalETL, http_mode: dict[str, Any], data: bytes, etl_args: str, status: int, message: str
) -> None:
    result = etl.send(data, etl_args=etl_args, **http_mode)
    assert result.status == status
    assert result.error is not None and message in result.error
    assert etl.transform(b"still serving", etl_args="gzip") != b""


def test_environment_sets_what_offline_jobs_do() -> None:
    env = {"MODE": "decompress", "ALGORITHM": "bz2"}
    with serve(SERVER, env=env) as etl:
        assert etl.transform(bz2.compress(DATA), comm="ws", fqn=True) == DATA
        assert gzip.decompress(etl.transform(DATA, etl_args="gzip")) == DATA  # args still win


def test_large_output_streams_in_pieces(etl: LocalETL) -> None:
    size = 32 * 1024 * 1024
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(size))  # a few KiB
    result = etl.transform(bomb, comm="hpull", etl_args="decompress")
    assert len(result) == size and not any(result)
