"""Running the FastAPI server under uvicorn: its settings, its graceful stop, and the keep-alive
of an app started by a plain ``uvicorn module:app``.

The reference's images start the server with ``uvicorn fastapi_server:fastapi_app ...``,
which keeps idle connections 5 s; a target keeps them 6 s (``net.http.idle_conn_time``) and
may reuse one just as uvicorn closes it: a plain EOF, which the target does not retry. The
app is built while uvicorn imports the module, inside a method of ``uvicorn.Config`` (``load``
or ``load_app``, by version); this finds that ``Config`` on the call stack and raises its
keep-alive before any connection is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn

from aisetl import drain
from aisetl._uvicorn_deadline import with_header_timeout
from aisetl._uvicorn_ws import FrameWebSocketProtocol
from aisetl.acceptor import STOP_LINGER, Acceptor
from aisetl.config import Settings
from aisetl.watch import in_flight

#: The target's idle-connection timeout (PROTOCOL.md §14): a server must keep idle ones longer.
TARGET_IDLE_TIMEOUT = 6.0
_MAX_FRAMES = 64
#: Seconds without a turn of the event loop after which its probes are left to it.
LOOP_STUCK_SECONDS = 5.0
_LOG = logging.getLogger(__name__)
WS_MAX_MESSAGE = 16 * 1024**3  # the target reads messages up to 16 GiB


def etl_uvicorn_config(app: Any, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """uvicorn settings for a target's traffic (keep-alive, 16 GiB ws messages, no pings)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws_max_size=WS_MAX_MESSAGE,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_per_message_deflate=False,
        ws=(FrameWebSocketProtocol if settings.ws_frames else None) or "auto",
        http=with_header_timeout(settings.header_timeout),
        timeout_keep_alive=int(settings.keepalive_timeout),
        timeout_graceful_shutdown=int(settings.grace_period) or None,
        backlog=2048,
        access_log=False,
        proxy_headers=False,  # a target connects directly: no forwarded headers to trust
        server_header=False,
        log_level="info",
        log_config=None,  # its records go through our handler (aisetl.logs)
    )


class GracefulServer(uvicorn.Server):
    """uvicorn, except that a graceful stop on SIGTERM drains first and ends with status 0,
    and that connections are accepted on a thread of their own.

    On the first SIGTERM or SIGINT it keeps serving, with ``/health`` answering 503, until the
    objects in flight are done (at most ``timeout_graceful_shutdown`` seconds); then uvicorn
    stops as usual. (uvicorn re-raises the signal once it has stopped, so the process would
    die of it.)

    Given listening sockets, it accepts on them with an :class:`~aisetl.acceptor.Acceptor`
    thread instead of the event loop: a readiness probe is answered there, and the other
    connections join the loop through ``loop.connect_accepted_socket``. On the loop a probe
    would wait for whole turns of it, and one turn that begins 200 large bodies (their
    buffers faulted in, their transforms started) takes longer than a kubelet waits. A loop
    that is busy is ready; one that has not turned for ``LOOP_STUCK_SECONDS`` (a transform
    that blocks it, a deadlock) is not: the thread then leaves probes to the loop, which
    answers them when it turns again, or never, as a kubelet should see.
    """

    _acceptors: list[Acceptor]
    _turned = 0.0  # when the loop last ran its tick (time.monotonic)

    def _loop_turning(self) -> bool:
        return time.monotonic() - self._turned < LOOP_STUCK_SECONDS

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[] if sockets else sockets)
        self._turned = time.monotonic()
        self._acceptors = []
        self._joined: list[asyncio.Task[Any]] | None = None  # kept only once stopping
        if not sockets or self.should_exit:
            return
        loop = asyncio.get_running_loop()

        def hand_over(accepted: tuple[socket.socket, Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._join_loop, accepted[0])
            except RuntimeError:  # the loop is closed: the process is on its way out
                accepted[0].close()

        for sock in sockets:
            acceptor = Acceptor(
                sock,
                hand_over,
                lambda exc: _LOG.warning("accepting a connection failed: %s", exc),
                answers_probes=self._loop_turning,
            )
            threading.Thread(target=acceptor.run, name="aisetl-accept", daemon=True).start()
            self._acceptors.append(acceptor)

    def _join_loop(self, conn: socket.socket) -> None:
        """Give an accepted connection to uvicorn's protocol (on the loop)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(self._new_protocol, conn))
        if self._joined is not None:
            self._joined.append(task)
        task.add_done_callback(functools.partial(_close_unjoined, conn))

    def _new_protocol(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )
        return protocol

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._joined = []  # the connections handed over from now on
        for acceptor in getattr(self, "_acceptors", []):
            # Before uvicorn closes the sockets; the connections it still held get a moment
            # to send their first request, and those that do are served.
            await asyncio.to_thread(acceptor.stop)
        await self._first_requests_begun(time.monotonic() + STOP_LINGER)
        await super().shutdown(sockets=sockets)

    async def _first_requests_begun(self, deadline: float) -> None:
        """Wait (until ``deadline``) for the connections joined during the stop to begin
        their request: uvicorn's shutdown closes a connection that has none yet."""
        joined = await asyncio.gather(*(self._joined or ()), return_exceptions=True)
        protocols = [pair[1] for pair in joined if isinstance(pair, tuple)]

        def waiting(protocol: Any) -> bool:
            transport = getattr(protocol, "transport", None)
            if transport is None or transport.is_closing():
                return False
            if transport.get_protocol() is not protocol:  # upgraded to WebSocket
                return False
            return getattr(protocol, "cycle", None) is None

        while any(waiting(protocol) for protocol in protocols) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if drain.reason() is None:
            drain.begin(signal.Signals(sig).name)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        self._turned = time.monotonic()  # uvicorn ticks every 0.1 s while the loop turns
        if drain.reason() is not None and not self.should_exit:
            grace = float(self.config.timeout_graceful_shutdown or 0)
            if in_flight() == 0 or drain.seconds() >= grace:
                self.config.timeout_graceful_shutdown = max(int(grace - drain.seconds()), 1)
                self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _close_unjoined(conn: socket.socket, task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:  # the client left at once
        _LOG.debug("connection not served: %s", task.exception())
        conn.close()


def _loading_config() -> object | None:
    """The ``uvicorn.Config`` whose ``load()`` is importing the app right now, if any."""
    config_type: type | None = getattr(sys.modules.get("uvicorn.config"), "Config", None)
    if config_type is None:
        return None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        candidate: object = frame.f_locals.get("self")
        if isinstance(candidate, config_type):  # in Config.load (or load_app, by version)
            return candidate
        frame = frame.f_back
    return None


def raise_loading_keep_alive(keep_alive: float, logger: logging.Logger) -> bool:
    """Raise the loading uvicorn's idle keep-alive to ``keep_alive`` when it is too short.

    Returns whether it did. Outside ``uvicorn.Config.load`` (``aisetl serve``, tests, a user's
    own ``uvicorn.run`` with a Config built after the app) nothing changes.
    """
    config = _loading_config()
    if config is None:
        return False
    current = float(getattr(config, "timeout_keep_alive", keep_alive))
    if current > TARGET_IDLE_TIMEOUT:
        return False
    config.timeout_keep_alive = int(keep_alive)  # type: ignore[attr-defined]
    logger.info(
        "uvicorn keeps idle connections %g s, less than a target's %g s: raised to %d s "
        "(a --timeout-keep-alive above %g s is kept as given)",
        current,
        TARGET_IDLE_TIMEOUT,
        int(keep_alive),
        TARGET_IDLE_TIMEOUT,
    )
    return True
