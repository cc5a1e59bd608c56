"""Readiness probes answered where connections are accepted, ahead of any queue.

A kubelet opens a new connection per probe and sends ``GET /health`` at once. In a burst of
new connections (a target opening its pools, a job starting) that connection waits in line
behind all the others: for a thread to start (standard library), for a pool thread
(gunicorn), for its turn on the event loop (uvicorn). Here the thread or callback that accepts
a connection looks at what already arrived on it (without waiting): a complete probe and
nothing else is answered right there, with ``Connection: close``. Anything else, or nothing
yet, takes the ordinary path, which answers probes too. (gunicorn's worker reads every
request head on its main loop, :mod:`aisetl._gunicorn_heads`, and asks
:func:`probe_answer` there once a head is complete.)
"""

from __future__ import annotations

import enum
import socket

from aisetl import drain
from aisetl.protocol import HEALTH_BODY, HEALTH_PATH
from aisetl.reply import TEXT_PLAIN

_END = b"\r\n\r\n"
_PEEK = 4096
_HEAD = (
    f"HTTP/1.1 200 OK\r\nContent-Type: {TEXT_PLAIN}\r\nContent-Length: {len(HEALTH_BODY)}"
    "\r\nConnection: close\r\n\r\n"
).encode()
_REQUESTS = {
    f"GET {HEALTH_PATH} HTTP/1.1".encode(): _HEAD + HEALTH_BODY,
    f"GET {HEALTH_PATH} HTTP/1.0".encode(): _HEAD + HEALTH_BODY,
    f"HEAD {HEALTH_PATH} HTTP/1.1".encode(): _HEAD,
    f"HEAD {HEALTH_PATH} HTTP/1.0".encode(): _HEAD,
}


def probe_answer(data: bytes) -> bytes | None:
    """The answer when ``data`` is exactly one bodiless readiness probe, else ``None``.

    ``None`` too while the process drains: the ordinary path then answers 503 with the reason.
    """
    if (
        drain.reason() is not None
        or not data.endswith(_END)
        or data.find(_END) != len(data) - len(_END)
    ):
        return None
    line, _, headers = data.partition(b"\r\n")
    answer = _REQUESTS.get(line)
    if answer is None:
        return None
    lowered = headers.lower()
    if b"content-length:" in lowered or b"transfer-encoding:" in lowered:
        return None
    return answer


class Waiting(enum.Enum):
    """What :func:`answer_waiting_probe` found on a new connection."""

    NOTHING = "nothing to read yet"
    ANSWERED = "a readiness probe, answered"
    OTHER = "something else (bytes, the peer's end, an error): for the ordinary path"


def _take_waiting_probe(sock: socket.socket) -> bytes | Waiting:
    """The answer to a probe that already arrived whole on ``sock``, its bytes consumed (so
    that closing then sends a FIN), or what was found instead, nothing read. Raises
    ``OSError`` when consuming the probe fails (the prober is gone)."""
    try:
        data = sock.recv(_PEEK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return Waiting.NOTHING
    except OSError:  # the client is gone: the ordinary path finds out
        return Waiting.OTHER
    answer = probe_answer(data)
    if answer is None:
        return Waiting.OTHER
    sock.recv(len(data), socket.MSG_DONTWAIT)
    return answer


def answer_waiting_probe(sock: socket.socket) -> Waiting:
    """Answer a probe that already arrived whole on a new connection (the caller then closes
    it). Nothing is read unless it is such a probe."""
    try:
        taken = _take_waiting_probe(sock)
        if isinstance(taken, Waiting):
            return taken
        sock.send(taken, socket.MSG_DONTWAIT)  # a new socket's buffer holds it whole
    except OSError:
        pass  # the prober is gone; closing is all that is left to do
    return Waiting.ANSWERED


def answer_waiting_probe_fd(fd: int, family: int) -> bytes | None:
    """For an event loop's transport: consume a waiting probe on ``fd`` and return its answer
    (to be written through the transport), or ``None`` leaving the connection untouched."""
    sock = socket.socket(family, socket.SOCK_STREAM, fileno=fd)
    try:
        taken = _take_waiting_probe(sock)
    except OSError:
        return None
    finally:
        sock.detach()  # the fd stays the transport's
    return None if isinstance(taken, Waiting) else taken
