"""The WebSocket task protocol (PROTOCOL.md §7) as a state machine that does no I/O.

Messages in, events out, in the manner of h11: a server's pump reads messages the way
:attr:`WsTasks.reading` asks, feeds them to :meth:`WsTasks.receive`, runs the tasks the events
name, and sends what :meth:`WsTasks.answer` says, one answer per task in arrival order. Every
ws rule lives here, for every ws server: which message is a control message and which a
payload, how to recover after a control message that cannot be parsed, what a task's answer
is (binary result, text "delivered", or a closed connection) and what is logged.

States (what the next message is):

================  ==================================  =====================================
state             message in                          events out / next state
================  ==================================  =====================================
CONTROL           valid control, with ``fqn``         :class:`RunTask` (no payload); CONTROL
CONTROL           valid control, no ``fqn``           none; PAYLOAD (or :class:`StreamTask`
                                                      when the pump streams it; CONTROL)
CONTROL           invalid control                     :class:`AnswerNow` (400 text); PROBE
PAYLOAD           any                                 :class:`RunTask` with it; CONTROL
PROBE             small, names an object              as CONTROL
PROBE             anything else                       :class:`Dropped`; CONTROL
================  ==================================  =====================================

PROBE exists because the protocol cannot say whether a task whose control message was
unreadable had a payload; a message that is small (at most :data:`CONTROL_MAX`) and parses as a
control message naming an object is taken for the next task, anything else for that payload.

A failed task's answer (``AISETL_WS_ERRORS``): ``text`` sends the error text, which a target
takes for success; ``close`` closes the connection (1011); ``binary`` sends an empty binary
message when the task's hop list ends at a destination target, else the text. A Go target
creates such a task without a local writer (the result belongs to another target), and its
read loop records an error for a binary reply to it instead of counting it delivered
(``ext/etl/websocket_comm.go``, ``readLoop``). A task with a local writer would store that
empty message as the object, so it gets the text.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aisetl import metrics
from aisetl.config import WS_ERRORS_BINARY, WS_ERRORS_CLOSE
from aisetl.edge import ObjectRequest
from aisetl.logs import traceback_of
from aisetl.protocol import (
    HEADER_DIRECT_PUT_LENGTH,
    is_target_hop,
    names_an_object,
    parse_ws_control,
)
from aisetl.reply import Reply, failure_text

#: A control message is a few hundred bytes; a larger message is certainly a payload.
CONTROL_MAX = 64 * 1024
#: Close code for "the server failed" (the target records a job error).
CLOSE_FAILED = 1011
#: Close code for a connection to a path other than ``/ws``.
CLOSE_POLICY = 1008
#: The object name shown for a task whose control message could not be read.
UNKNOWN_OBJECT = "(unknown)"
#: What a text reply to a failed task costs in a cluster (PROTOCOL.md §7.4, D27).
LOST_IN_CLUSTER = (
    "over ws a failure cannot be reported to the target: in a cluster this object would be "
    "stored empty or skipped"
)


class Reading(enum.Enum):
    """How the pump should read the next message."""

    WHOLE = "whole"  # the whole message, parts joined
    PROBE = "probe"  # at most CONTROL_MAX bytes of it; past that, only its size


@dataclass(frozen=True)
class Oversized:
    """A message read in PROBE mode that was larger than :data:`CONTROL_MAX`."""

    size: int


@dataclass(frozen=True)
class RunTask:
    """Run this task; ``payload`` is its bytes (``None`` when it names a file)."""

    request: ObjectRequest
    payload: bytes | None


@dataclass(frozen=True)
class StreamTask:
    """Run this streaming task on its payload message, read part by part by the pump."""

    request: ObjectRequest


@dataclass(frozen=True)
class AnswerNow:
    """A task answered without running (its control message could not be read)."""

    answer: Send | Close


@dataclass(frozen=True)
class Dropped:
    """A message taken for the payload of a task that was answered already, dropped."""

    size: int


@dataclass(frozen=True)
class Send:
    """Send one message: ``bytes`` as binary (a result), ``str`` as text ("delivered")."""

    data: bytes | str


@dataclass(frozen=True)
class Close:
    """Close the connection with this code (queued tasks are then lost to the target)."""

    code: int


Event = RunTask | StreamTask | AnswerNow | Dropped


class _State(enum.Enum):
    CONTROL = "control"
    PAYLOAD = "payload"
    PROBE = "probe"


class WsTasks:
    """The task rules of one ws connection.

    ``streams`` says whether a task's payload should be streamed to it (a streaming transform
    on a server that reads messages part by part); ``errors`` is ``AISETL_WS_ERRORS``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        errors: str = "text",
        streams: Callable[[ObjectRequest], bool] = lambda request: False,
        observer: metrics.Observer = metrics.NULL,
    ) -> None:
        self._logger = logger
        self._observer = observer
        self._close_on_error = errors == WS_ERRORS_CLOSE
        self._binary_on_error = errors == WS_ERRORS_BINARY
        self._streams = streams
        self._state = _State.CONTROL
        self._pending: ObjectRequest | None = None

    @property
    def reading(self) -> Reading:
        """How the next message must be read."""
        return Reading.PROBE if self._state is _State.PROBE else Reading.WHOLE

    def receive(self, message: bytes | str | Oversized) -> list[Event]:
        """Feed one whole message (or, in PROBE mode, what the pump could keep of it)."""
        state = self._state
        if state is _State.PAYLOAD:
            request, self._pending = self._pending, None
            assert request is not None and not isinstance(message, Oversized)
            self._state = _State.CONTROL
            payload = message if isinstance(message, bytes) else message.encode("utf-8")
            return [RunTask(request, payload)]
        if state is _State.PROBE:
            self._state = _State.CONTROL
            if isinstance(message, Oversized) or not names_an_object(message):
                size = message.size if isinstance(message, Oversized) else len(message)
                return [Dropped(size)]
        assert not isinstance(message, Oversized)
        return self._control(message)

    def _control(self, message: bytes | str) -> list[Event]:
        try:
            request = ObjectRequest.from_ws(parse_ws_control(message))
        except ValueError as exc:
            self._state = _State.PROBE
            failure = f"Invalid WebSocket control message: {exc}"
            return [
                AnswerNow(self._failed(400, failure_text(failure, UNKNOWN_OBJECT), UNKNOWN_OBJECT))
            ]
        if request.fqn:
            return [RunTask(request, None)]
        if self._streams(request):
            return [StreamTask(request)]
        self._pending = request
        self._state = _State.PAYLOAD
        return []

    def answer(self, reply: Reply, request: ObjectRequest) -> Send | Close:
        """The one message a task gets for a buffered reply (PROTOCOL.md §7.4)."""
        if reply.status == 204:
            return Send(reply.headers.get(HEADER_DIRECT_PUT_LENGTH, "0"))
        if reply.status < 300:
            return Send(reply.body)
        text = reply.body.decode("utf-8", "replace")
        return self._failed(
            reply.status, text, request.path, traceback_of(reply.failure), request.pipeline
        )

    def stream_failed(self, reply: Reply, request: ObjectRequest, started: bool) -> Send | Close:
        """A streamed result failed: answer as a failure, or close if part of it is out."""
        if not started:
            return self.answer(reply, request)
        text = reply.body.decode("utf-8", "replace")
        self._logger.error(
            "ws reply for %r aborted mid-stream: %s; closing the connection so the target "
            "records an error",
            request.path,
            text,
            extra={"object": request.path, "comm": "ws", "status": reply.status, "error": text},
        )
        return Close(CLOSE_FAILED)

    def _failed(
        self,
        status: int,
        text: str,
        path: str,
        trace: BaseException | None = None,
        pipeline: str | None = None,
    ) -> Send | Close:
        fields = {"object": path, "comm": "ws", "status": status, "error": text}
        exc_info = (type(trace), trace, trace.__traceback__) if trace is not None else None
        if self._binary_on_error and ends_at_target(pipeline):
            self._logger.error(
                "ws task for %r failed (%d): %s; answering with an empty binary message "
                "(AISETL_WS_ERRORS=binary): the target records an error for this object",
                path,
                status,
                text,
                extra=fields,
                exc_info=exc_info,
            )
            return Send(b"")
        if self._close_on_error:
            self._logger.error(
                "ws task for %r failed (%d): %s; closing the connection (AISETL_WS_ERRORS=close): "
                "the target records an error, and the tasks still queued on this connection "
                "hang until the job is aborted",
                path,
                status,
                text,
                extra=fields,
                exc_info=exc_info,
            )
            return Close(CLOSE_FAILED)
        self._logger.error(
            "ws task for %r failed (%d): %s; %s",
            path,
            status,
            text,
            LOST_IN_CLUSTER,
            extra=fields,
            exc_info=exc_info,
        )
        self._observer.unreported_failure("ws")
        return Send(text)


def ends_at_target(pipeline: str | None) -> bool:
    """Whether a hop list ends at a destination target (a hop with a path, PROTOCOL.md §8.1).

    A Go target adds that hop only when another target owns the result, and then sends the
    task without a local writer: the one case where a binary reply is recorded as an error.
    """
    if not pipeline or not pipeline.strip():
        return False
    last = pipeline.rsplit(",", 1)[-1].strip()
    try:
        return bool(last) and is_target_hop(last)
    except ValueError:  # not a URL at all: the task failed for that, and gets the text
        return False
