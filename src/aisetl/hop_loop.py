"""An event loop on a thread of its own, for the threaded servers' direct puts.

The standard-library and Flask servers transform on threads. A buffered result's direct put
from such a thread through urllib3 cost more Python than the rest of the object (URL parsing,
header merging, the pooled connection's checks). The FastAPI server's event-loop client
(:class:`aisetl.aio.LoopIO`) does the same PUT for a fraction of that, so the threaded servers
hand such a PUT to one loop thread per process that runs it, and wait for its answer: about
0.6 ms less server CPU per 1 KiB object on the standard-library server here (docs/performance.md).
Streaming bodies and TLS peers keep the blocking client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aisetl.aio import LoopIO
from aisetl.config import Settings
from aisetl.per_process import PerProcess

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class HopLoop:
    """Runs coroutines that use a :class:`LoopIO` on a loop thread, started on first use in
    each process (a forked worker starts its own)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._started: PerProcess[tuple[asyncio.AbstractEventLoop, LoopIO]] = PerProcess(
            self._start
        )

    def _start(self) -> tuple[asyncio.AbstractEventLoop, LoopIO]:
        loop = _new_loop()
        threading.Thread(target=loop.run_forever, name="aisetl-hop-loop", daemon=True).start()
        return loop, LoopIO(self._settings, asyncio.to_thread)

    def run(self, work: Callable[[LoopIO], Coroutine[Any, Any, T]]) -> T:
        """``work(io)`` on the loop thread; its result, or its exception, on this thread."""
        loop, io = self._started.get()
        return asyncio.run_coroutine_threadsafe(work(io), loop).result()
