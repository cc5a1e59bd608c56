"""Listening sockets and a pre-fork supervisor: N worker processes share one socket.

Workers are forked after the server object was built, so models loaded in ``__init__`` are
loaded once and shared copy-on-write. A worker that dies is replaced (an ETL container must
never exit); SIGTERM is passed to every worker, which finishes its objects in flight.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from aisetl.probe_fastpath import defer_accept

LISTEN_BACKLOG = 2048
#: How often (seconds) a thread running Python must offer the interpreter lock to others. The
#: default 5 ms makes a thread that needs the lock briefly (/health, the event loop) wait 5 ms
#: per turn behind each busy transform thread.
SWITCH_INTERVAL = 0.001


def tune_interpreter() -> None:
    """Settings for a server process: a short interpreter-lock switch interval."""
    sys.setswitchinterval(SWITCH_INTERVAL)


_RESTART_PAUSE = 0.5


def bind_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """Bind and listen on ``host:port`` (IPv4 or IPv6), with address reuse."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    defer_accept(sock)
    sock.set_inheritable(True)
    return sock


def run_workers(
    sock: socket.socket,
    workers: int,
    serve: Callable[[socket.socket], None],
    grace_period: float,
    logger: logging.Logger,
) -> None:
    """Serve ``sock`` with ``workers`` processes (in this process when ``workers`` is 1)."""
    tune_interpreter()
    if workers <= 1:
        serve(sock)
        return
    Supervisor(sock, workers, serve, grace_period, logger).run()


class Supervisor:
    """Forks and watches worker processes until SIGTERM or SIGINT."""

    def __init__(
        self,
        sock: socket.socket,
        workers: int,
        serve: Callable[[socket.socket], None],
        grace_period: float,
        logger: logging.Logger,
    ) -> None:
        self._sock = sock
        self._workers = workers
        self._serve = serve
        self._grace = grace_period
        self._logger = logger
        self._children: set[int] = set()
        self._stopping = False

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self._serve(self._sock)
            except BaseException:
                self._logger.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        self._children.add(pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            self._logger.info(
                "Received %s: stopping %d workers", signal.Signals(signum).name, len(self._children)
            )
        self._stopping = True
        for pid in list(self._children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self._children.discard(pid)

    def run(self) -> None:
        """Start the workers and keep them running until asked to stop."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for _ in range(self._workers):
            self._spawn()
        self._logger.info("Started %d worker processes", self._workers)
        deadline: float | None = None
        while self._children:
            if self._stopping and deadline is None:
                deadline = time.monotonic() + self._grace + 2.0
            if deadline is not None and time.monotonic() > deadline:
                for pid in list(self._children):
                    self._logger.warning("worker %d did not stop in time; killing it", pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        self._children.discard(pid)
                deadline = time.monotonic() + 5.0
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            self._children.discard(pid)
            if not self._stopping:
                self._logger.error("worker %d exited (status %d); starting a new one", pid, status)
                time.sleep(_RESTART_PAUSE)
                self._spawn()
        self._sock.close()
