"""The hash example: digests equal to hashlib's and xxhash's, chosen by etl_args or the env."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from aisetl.testing import LocalETL, ServerStartError, serve

SERVER = str(Path(__file__).with_name("server.py"))
DATA = os.urandom(1024 * 1024 + 123)  # more than one read
SALT42 = (42).to_bytes(8, "little")

CASES = {
    "": xxhash.xxh3_64(DATA).hexdigest(),
    "xxh64,42": xxhash.xxh64(DATA, seed=42).hexdigest(),
    '{"algorithm": "xxh3_128", "seed": 7}': xxhash.xxh3_128(DATA, seed=7).hexdigest(),
    '{"algorithm": "xxh32", "seed": 4294967295}': xxhash.xxh32(DATA, seed=2**32 - 1).hexdigest(),
    "blake2b,42": hashlib.blake2b(DATA, salt=SALT42 + bytes(8)).hexdigest(),
    '{"algorithm": "blake2s", "key": "s3cret", "digest_size": 16}': hashlib.blake2s(
        DATA, key=b"s3cret", digest_size=16
    ).hexdigest(),
    "sha256": hashlib.sha256(DATA).hexdigest(),
    "md5": hashlib.md5(DATA).hexdigest(),
}


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    with serve(SERVER) as running:
        yield running


def test_digest_over_every_mode(etl: LocalETL, mode: dict[str, Any]) -> None:
    result = etl.transform(DATA, path="bucket/data.bin", etl_args="xxh64,42", **mode)
    assert result == xxhash.xxh64(DATA, seed=42).hexdigest().encode()


@pytest.mark.parametrize("etl_args", CASES)
def test_digest_for_each_argument_form(etl: LocalETL, etl_args: str) -> None:
    assert etl.transform(DATA, etl_args=etl_args).decode() == CASES[etl_args]


def test_the_seed_changes_the_digest(etl: LocalETL) -> None:
    digests = {etl.transform(b"same bytes", etl_args=f"xxh64,{seed}") for seed in range(5)}
    assert len(digests) == 5


@pytest.mark.parametrize(
    ("etl_args", "message"),
    [
        ("crc32", "unknown algorithm 'crc32'"),
        ("sha256,1", "sha256 takes no seed"),
        ('{"algorithm": "xxh64", "seed": -1}', "seed must be a whole number"),
        ('{"algorithm": "xxh32", "seed": 4294967296}', "seed of xxh32 must be below 2**32"),
        ('{"algorithm": "xxh64", "key": "k"}', "key and digest_size are for blake2b"),
        ('{"algorithm": "blake2s", "digest_size": 33}', "digest_size of blake2s must be 1 to 32"),
        ('{"algorithm": "blake2b", "key": "' + "k" * 65 + '"}', "at most 64 bytes"),
        ('{"algo": "md5"}', "unknown argument 'algo'"),
        ("{not json", "etl_args is not valid JSON"),
    ],
)
def test_bad_arguments_are_400(
    etl: LocalETL, http_mode: dict[str, Any], etl_args: str, message: str
) -> None:
    result = etl.send(b"data", etl_args=etl_args, **http_mode)
    assert result.status == 400
    assert result.error is not None and message in result.error
    assert etl.transform(b"abc", etl_args="md5") == hashlib.md5(b"abc").hexdigest().encode()


def test_defaults_come_from_the_environment() -> None:
    with serve(SERVER, env={"HASH_ALGORITHM": "blake2b", "HASH_SEED": "42"}) as etl:
        expected = hashlib.blake2b(b"offline", salt=SALT42 + bytes(8)).hexdigest()
        assert etl.transform(b"offline", comm="hpull", fqn=True).decode() == expected


def test_a_bad_default_stops_the_server_at_start() -> None:
    start = serve(SERVER, env={"HASH_ALGORITHM": "crc32"}, timeout=15)
    with pytest.raises(ServerStartError, match="HASH_ALGORITHM"), start:
        pass
