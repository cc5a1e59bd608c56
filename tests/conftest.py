"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisetl.target.ports import PortLease


@pytest.fixture
def held_port() -> Iterator[int]:
    """A free port on 127.0.0.1, held for the test's own server (:class:`PortLease`).

    No other test process picks it while the test starts its server on it.
    """
    with PortLease() as lease:
        yield lease.port
