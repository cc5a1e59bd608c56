"""uvicorn's HTTP protocol with the header-read deadline (:mod:`aisetl.head_deadline`) and
readiness probes answered as their connection is made (:mod:`aisetl.probe_fastpath`).

uvicorn times idle keep-alive connections out, but not a request head that arrives a byte at a
time. Here a timer starts once the bytes that carried a request's first byte are parsed and its
head is still incomplete, and stops when the head is; when it fires first, the client gets the
one 408 answer and the connection is closed. (A head that came whole, the usual case, never
starts one.)

The deadline bounds how long a head may take, not how large it grows meanwhile: httptools
keeps a header value until it is complete and uvicorn keeps every header, with no limit of
their own. A head still incomplete after :data:`MAX_HEAD_BYTES` gets a 431 and the connection
is closed (the other servers refuse a header line over 64 KiB or more than 100 of them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aisetl._uvicorn_http import ETLHttpToolsProtocol
from aisetl.head_deadline import head_timeout_reply
from aisetl.http11 import serialize
from aisetl.probe_fastpath import answer_waiting_probe_fd
from aisetl.reply import malformed_request_reply

#: The most bytes a request head may take (counted a read at a time; a read is at most 256 KiB,
#: so a head that fits is never refused for the body bytes that came in its last read).
MAX_HEAD_BYTES = 1024 * 1024


class DeadlineHttpToolsProtocol(ETLHttpToolsProtocol):  # type: ignore[valid-type,misc]
    """:class:`ETLHttpToolsProtocol` whose request heads must arrive within ``header_timeout``."""

    header_timeout = 5.0  # set per server by aisetl._uvicorn_run

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0  # of the head being read, in the reads that did not complete it

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        answer = answer_waiting_probe_fd(sock.fileno(), sock.family)
        if answer is not None:  # a readiness probe, answered ahead of the loop's queue
            transport.write(answer)
            transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head:  # (the usual case: the head came whole, or no head began)
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large()
        elif self._head_timer is None and self.header_timeout:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        self.logger.warning(
            "request head from %s not complete within %g s: answered 408",
            self.client,
            self.header_timeout,
        )
        self.transport.write(serialize(head_timeout_reply(self.header_timeout)))
        self.transport.close()

    def _head_too_large(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        self.logger.warning(
            "request head from %s over %d bytes and not complete: answered 431",
            self.client,
            MAX_HEAD_BYTES,
        )
        message = (
            f"Request head too large: over {MAX_HEAD_BYTES} bytes and not complete "
            "(header lines too long or too many)"
        )
        self.transport.write(serialize(malformed_request_reply(431, message)))
        self.transport.close()


def with_header_timeout(seconds: float) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class for a server whose heads must arrive within ``seconds``."""
    return type(
        "ETLDeadlineHttpToolsProtocol", (DeadlineHttpToolsProtocol,), {"header_timeout": seconds}
    )
