"""Servers whose transforms notice where they run: on an event loop thread or not."""

from __future__ import annotations

import asyncio

from aisetl import ETLServer, TransformError


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopHostile(ETLServer):
    """Upper-cases, but cannot run on an event loop thread (like code that calls asyncio.run)."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if _on_event_loop():
            raise RuntimeError("asyncio.run() cannot be called from a running event loop")
        assert isinstance(data, bytes)
        if etl_args == "refuse":
            raise TransformError(422, "refused as asked")
        return data.upper()


class WhereAmI(ETLServer):
    """Answers ``loop`` or ``thread``: where the transform ran."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return b"loop" if _on_event_loop() else b"thread"
