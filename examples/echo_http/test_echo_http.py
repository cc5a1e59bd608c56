"""The http echo returns every object byte for byte, over every way a target sends one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisetl.testing import LocalETL, serve

SERVER = str(Path(__file__).with_name("server.py"))
OBJECTS = {
    "empty": b"",
    "text": "naïve café\n".encode(),
    "binary": bytes(range(256)) * 64,
    "3MiB": os.urandom(3 * 1024 * 1024),
}


@pytest.fixture(scope="module", params=[False, True], ids=["bytes", "direct-fqn"])
def etl(request: pytest.FixtureRequest) -> Iterator[LocalETL]:
    """The server as is, and with ETL_DIRECT_FQN=true (transform() then gets file paths)."""
    with serve(SERVER, direct_fqn=request.param) as running:
        yield running


@pytest.mark.parametrize("name", OBJECTS)
def test_echo_returns_the_object(etl: LocalETL, http_mode: dict[str, Any], name: str) -> None:
    data = OBJECTS[name]
    assert etl.transform(data, path=f"bucket/dir/{name} 1.bin", **http_mode) == data
