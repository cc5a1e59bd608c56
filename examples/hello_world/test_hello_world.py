"""Hello world answers every object, of any size, with the greeting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisetl.testing import LocalETL, serve

SERVER = str(Path(__file__).with_name("server.py"))


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    with serve(SERVER) as running:
        yield running


@pytest.mark.parametrize("data", [b"", b"any bytes at all", bytes(range(256)) * 1000])
def test_every_object_becomes_the_greeting(
    etl: LocalETL, mode: dict[str, Any], data: bytes
) -> None:
    assert etl.transform(data, path="bucket/note.txt", **mode) == b"Hello World!"
