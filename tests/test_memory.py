"""The memory limit a buffered body is checked against."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisetl import memory
from aisetl.sources import BodyDoesNotFit, check_fits_in_memory


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    memory.memory_limit.cache_clear()


def test_the_machines_memory_is_known_on_linux() -> None:
    limit = memory.memory_limit()
    assert limit is not None and limit > 64 * 2**20


@pytest.mark.parametrize(("text", "expected"), [("4294967296\n", 4 * 2**30), ("max\n", None)])
def test_a_container_limit_lower_than_the_machine_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: int | None
) -> None:
    limit_file = tmp_path / "memory.max"
    limit_file.write_text(text)
    monkeypatch.setattr(memory, "_CGROUP_LIMIT_FILES", (str(limit_file),))
    monkeypatch.setattr(memory, "_physical_memory", lambda: 64 * 2**30)
    assert memory.memory_limit() == (expected or 64 * 2**30)


def test_a_body_over_the_limit_is_refused_with_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_CGROUP_LIMIT_FILES", ())
    monkeypatch.setattr(memory, "_physical_memory", lambda: 1000)
    check_fits_in_memory(1000)
    with pytest.raises(BodyDoesNotFit) as raised:
        check_fits_in_memory(1001)
    assert raised.value.status == 413 and "1001 bytes" in raised.value.message
