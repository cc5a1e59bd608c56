"""MD5 answers with the same digest as hashlib, for small and multi-chunk objects."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisetl.testing import LocalETL, serve

SERVER = str(Path(__file__).with_name("server.py"))
SIZES = [0, 1, 4096, 2 * 1024 * 1024 + 7]  # the last spans several 1 MiB reads


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    with serve(SERVER) as running:
        yield running


@pytest.mark.parametrize("size", SIZES)
def test_digest_matches_hashlib(etl: LocalETL, mode: dict[str, Any], size: int) -> None:
    data = os.urandom(size)
    digest = etl.transform(data, path="bucket/blob.bin", **mode)
    assert digest == hashlib.md5(data).hexdigest().encode()


def test_known_vector(etl: LocalETL) -> None:
    assert etl.transform(b"abc") == b"900150983cd24fb0d6963f7d28e17f72"
