"""pytest plugin of aisetl (registered through the ``pytest11`` entry point): ``etl_server``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aisetl.testing import LocalETL


@pytest.fixture
def etl_server() -> Iterator[Callable[..., LocalETL]]:
    """A factory with the arguments of :func:`aisetl.testing.serve`; servers stop after the test.

    >>> def test_upper(etl_server):
    ...     assert etl_server(UpperServer).transform(b"abc") == b"ABC"
    """
    from aisetl.testing import serve

    with contextlib.ExitStack() as stack:

        def start(server: Any, **options: Any) -> LocalETL:
            return stack.enter_context(serve(server, **options))

        yield start
