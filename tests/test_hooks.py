"""The check of the private uvicorn and gunicorn parts aisetl extends, and its one warning."""

from __future__ import annotations

import asyncio
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from aisetl import _gunicorn, _uvicorn_http, _uvicorn_ws
from aisetl._hooks import DependencyWarning, declared_range, missing, warn_missing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class Complete:
    """Has every hook: a method, and state set in ``__init__``, a method, a closure, the class."""

    kind = "bytes"

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def handle(self) -> None:
        self.scope: dict[str, Any] = {}

        def later() -> None:
            self.closed = True

        later()


class Inherits(Complete):
    """Every hook comes from the base."""


class Older:
    """Reads ``scope`` but never sets it, and has no ``handle``."""

    handle = "not a method"

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def peek(self) -> object:
        return self.scope  # type: ignore[attr-defined]


def test_a_class_with_every_hook_lacks_nothing() -> None:
    names = ["queue", "scope", "closed", "kind"]
    assert missing(Complete, ["handle"], names) == []
    assert missing(Inherits, ["handle"], names) == []


def test_a_missing_method_or_attribute_is_named_with_its_class() -> None:
    assert missing(Older, ["handle"], ["queue", "scope"]) == ["Older.handle", "Older.scope"]


class SansIOBefore0521(asyncio.Protocol):
    """Stands in for uvicorn's sans-I/O WebSocket protocol before 0.52.1: no write flow control
    (``asyncio.Protocol``'s empty ``pause_writing`` does not count) and no ``disconnected``."""

    curr_msg_data_type = "bytes"

    def __init__(self) -> None:
        self.queue, self.transport, self.writable, self.conn = None, None, None, None
        self.close_sent = self.read_paused = self.handshake_initiated = False
        self.config = self.logger = None

    def handle_connect(self, event: object) -> None:
        self.scope: dict[str, Any] = {}

    def handle_bytes(self, event: object) -> None: ...
    def handle_cont(self, event: object) -> None: ...
    async def send(self, message: object) -> None: ...
    async def receive(self) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def handle_parser_exception(self) -> None: ...


def test_the_ws_check_names_what_an_older_uvicorn_lacks() -> None:
    assert _uvicorn_ws.missing_hooks(SansIOBefore0521) == [
        "SansIOBefore0521.pause_writing",
        "SansIOBefore0521.resume_writing",
        "SansIOBefore0521.disconnected",
    ]


def test_a_missing_hook_is_one_warning_with_the_version_and_what_is_lost() -> None:
    with pytest.warns(DependencyWarning) as caught:
        fell_back = warn_missing(
            "uvicorn", _uvicorn_ws.missing_hooks(SansIOBefore0521), _uvicorn_ws.LOST
        )
    assert fell_back is True
    assert len(caught) == 1
    text = str(caught[0].message)
    assert text.startswith(f"uvicorn {metadata.version('uvicorn')} lacks ")
    assert "SansIOBefore0521.disconnected" in text
    assert _uvicorn_ws.LOST in text
    assert f"tested with uvicorn{declared_range('uvicorn')}" in text


def test_nothing_missing_is_no_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_missing("uvicorn", missing(Complete, ["handle"]), "nothing") is False
    assert caught == []


def test_the_declared_range_is_the_one_pyproject_declares() -> None:
    """(A stale install of the package fails here: run ``make venv`` again.)"""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    declared = next(req for req in extras["fastapi"] if req.startswith("uvicorn"))
    low, high = declared_range("uvicorn").split(",")
    assert low.startswith(">=") and high.startswith("<")
    assert declared.replace(" ", "") in (f"uvicorn{low},{high}", f"uvicorn{high},{low}")


def test_the_installed_uvicorn_and_gunicorn_have_every_hook() -> None:
    """With the versions this suite runs on, nothing falls back."""
    from gunicorn.workers.gthread import ThreadWorker
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    assert _uvicorn_ws.missing_hooks(WebSocketsSansIOProtocol) == []
    assert _uvicorn_ws.FrameWebSocketProtocol is not None
    assert _uvicorn_http.missing_hooks(HttpToolsProtocol) == []
    assert _uvicorn_http.ETLHttpToolsProtocol is _uvicorn_http.ParseErrorProtocol
    assert _gunicorn.missing_hooks(ThreadWorker) == []
    assert _gunicorn.ETLThreadWorker is _gunicorn.ParseErrorWorker
