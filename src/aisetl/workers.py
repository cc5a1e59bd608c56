"""Listening sockets and a pre-fork supervisor: N worker processes share one socket.

Workers are forked after the server object was built, so models loaded in ``__init__`` are
loaded once and shared copy-on-write (with ``AISETL_GPUS``, ``aisetl serve`` builds the server
in each worker instead: see :mod:`aisetl.gpus`). Each worker has an index, 0 to N-1, kept by
its replacement; with ``AISETL_GPUS`` worker *i* sees only GPU *i mod N*. A worker that dies
is replaced (an ETL container must never exit); SIGTERM is passed to every worker, which
finishes its objects in flight. The workers share one metrics folder
(:func:`aisetl.pod.forking`), so a scrape of any of them gives the pod's totals.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from aisetl import gpus, pod

LISTEN_BACKLOG = 2048
#: How often (seconds) a thread running Python must offer the interpreter lock to others. The
#: default 5 ms makes a thread that needs the lock briefly (/health, the event loop) wait 5 ms
#: per turn behind each busy transform thread.
SWITCH_INTERVAL = 0.001


#: Buffers up to this size come from malloc's heap instead of their own mmap (glibc)...
MALLOC_MMAP_THRESHOLD = 64 * 1024 * 1024
#: ...and up to this much freed heap is kept for the next objects instead of given back.
MALLOC_TRIM_THRESHOLD = 256 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_interpreter() -> None:
    """Settings for a server process: a short interpreter-lock switch interval, and malloc
    tuned for object-sized buffers (see :func:`tune_malloc`)."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    tune_malloc()


def tune_malloc() -> bool:
    """Keep object-sized buffers in malloc's heap (glibc; ``False`` elsewhere).

    By default glibc gives every buffer above a few MiB its own mmap and unmaps it when freed,
    so each copy of a large object into a new buffer first faults in (and zeroes) every page:
    about a fifth of the CPU a 16 MiB echo costs. Reusing heap memory avoids that.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    )


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
        gpus.pin_from_env(0)
        serve(sock)
        return
    with pod.forking(workers):
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
        self._children: dict[int, int] = {}  # pid -> worker index
        self._stopping = False

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                pod.worker_started()
                gpus.pin_from_env(index)
                self._serve(self._sock)
            except BaseException:
                self._logger.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                pod.worker_stopping()
                os._exit(code)
        self._children[pid] = index

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
                self._children.pop(pid, None)

    def run(self) -> None:
        """Start the workers and keep them running until asked to stop."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self._workers):
            self._spawn(index)
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
                        self._children.pop(pid, None)
                deadline = time.monotonic() + 5.0
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            pod.worker_exited(pid)
            index = self._children.pop(pid, 0)
            if not self._stopping:
                self._logger.error("worker %d exited (status %d); starting a new one", pid, status)
                time.sleep(_RESTART_PAUSE)
                self._spawn(index)
        self._sock.close()
