"""uvicorn's WebSocket protocol, able to pass binary messages frame by frame.

ASGI hands an application whole WebSocket messages, and uvicorn assembles each one in memory
(its frames, then their join) before the application sees a byte: a 1 GiB object sent over
ws costs gigabytes. This subclass of uvicorn's own ``websockets`` sans-I/O protocol adds an
opt-in extension, announced in the scope as ``aisetl.ws.frames``:

* an application that accepts with ``{"type": "websocket.accept", "aisetl.ws.frames": True}``
  receives binary messages in parts as they arrive (of :data:`PART_MIN` or more, but the
  last): ``{"type": "websocket.receive", "bytes": part, "aisetl.more": True}``, ..., and a last
  part with ``"aisetl.more": False``; reading pauses until the application has taken each
  part, so memory does not grow with the message;
* it may send a binary message in parts: ``{"type": "websocket.send", "bytes": part,
  "aisetl.more": True}``, ..., and a last one with ``"aisetl.more": False``, each written as
  one frame when the transport has room.

* it may put a callable in that accept message (:data:`TAKE`): each whole binary message is
  then offered to it in the read that completed it, while no message waits in the queue, and
  a message it takes never goes through the queue (no wake-up of the application per
  message); small answers it sends from there go out in one write at the end of the read.

Applications that do not opt in (user routes, any other app) get plain ASGI. Text messages
are always whole. The subclass relies on methods and attributes of uvicorn's protocol that are
not public (:data:`UVICORN_METHODS`, :data:`UVICORN_ATTRIBUTES`); they are checked at import.
Where one is missing (a uvicorn outside the tested range), :data:`FrameWebSocketProtocol` is
``None``, uvicorn's default protocol is used (whole messages), and a
:class:`~aisetl._hooks.DependencyWarning` names the version and what is lost.

Small whole messages sent in one turn of the event loop (the answers of pipelined tasks that
finished together) go out in one write instead of one system call each.

The common frames skip the library, which parses every frame with a generator per read and a
frame object per frame: the frames of binary messages (a control message in one frame, a
payload in frames of 4 KiB, a frame that spans reads) are unmasked and delivered directly
(:class:`~aisetl.ws_frames.ClientFrames`; control frames, text and the rest still go to
``websockets``), and a small whole answer is framed here (:func:`~aisetl.ws_frames.server_head`).
Messages reach the application through a :class:`~aisetl.light_queue.LightQueue` instead of
uvicorn's ``asyncio.Queue``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aisetl._hooks import missing, warn_missing
from aisetl.light_queue import LightQueue
from aisetl.ws_frames import WHOLE_BINARY, WHOLE_TEXT, ClientFrames, server_head

EXTENSION = "aisetl.ws.frames"
MORE = "aisetl.more"
#: In the accept message of an application that takes the extension: a callable
#: ``take(message, send_now) -> bool`` offered each whole binary message in the read that
#: completed it, while no message waits in the queue; ``True``: it was handled there (and
#: ``send_now(data) -> bool`` wrote its small answer at once, or said it could not).
TAKE = "aisetl.ws.take"

#: Methods of uvicorn's sans-I/O protocol that the subclass overrides or relies on
#: (``receive`` resumes reading, ``pause_writing`` / ``resume_writing`` drive ``writable``).
UVICORN_METHODS = (
    "handle_connect", "handle_bytes", "handle_cont", "send", "data_received", "receive",
    "pause_writing", "resume_writing", "handle_parser_exception",
)  # fmt: skip
#: Its connection state that the subclass reads or sets.
UVICORN_ATTRIBUTES = (
    "scope", "curr_msg_data_type", "close_sent", "queue", "read_paused", "transport",
    "writable", "disconnected", "conn", "handshake_initiated", "config", "logger",
)  # fmt: skip
#: What the subclass calls on the protocol's ``conn`` (websockets' sans-I/O ``ServerProtocol``).
WEBSOCKETS_METHODS = ("send_binary", "send_continuation", "data_to_send", "fail")
#: What it reads of ``conn`` to know that frames may be read and written without it.
WEBSOCKETS_ATTRIBUTES = ("state", "extensions")
#: What a user loses when the check fails.
LOST = (
    "WebSocket messages are read and written whole, so a streamed object is held in memory "
    "(AISETL_WS_FRAMES has no effect)"
)


def frame_protocol_or_none() -> type[Any] | None:
    """The frame-by-frame subclass of uvicorn's protocol, or ``None`` (and one warning)."""
    try:
        from uvicorn.protocols.utils import ClientDisconnected
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from websockets.exceptions import InvalidState
        from websockets.protocol import State
        from websockets.server import ServerProtocol
    except ImportError as exc:
        warn_missing("uvicorn", [f"{exc.name or exc} (the sans-I/O WebSocket protocol)"], LOST)
        return None
    if warn_missing("uvicorn", missing_hooks(WebSocketsSansIOProtocol), LOST):
        return None
    lacking = missing(ServerProtocol, WEBSOCKETS_METHODS, WEBSOCKETS_ATTRIBUTES)
    if warn_missing("websockets", lacking, LOST):
        return None
    return build(WebSocketsSansIOProtocol, ClientDisconnected, InvalidState, State.OPEN)


def missing_hooks(base: type) -> list[str]:
    """What of :data:`UVICORN_METHODS` and :data:`UVICORN_ATTRIBUTES` ``base`` lacks."""
    return missing(base, UVICORN_METHODS, UVICORN_ATTRIBUTES, not_from=asyncio.Protocol)


def build(
    base: type[Any],
    client_disconnected: type[Exception],
    invalid_state: type[Exception],
    open_state: Any,
) -> type[Any]:
    """Subclass uvicorn's sans-I/O protocol ``base`` with the ``aisetl.ws.frames`` extension.

    A frame written once the peer has begun closing (websockets raises ``invalid_state``; the
    connection's state is no longer ``open_state``) is a client gone (``client_disconnected``),
    as in uvicorn's own ``send``.
    """

    class FrameProtocol(base):  # type: ignore[misc]
        """uvicorn's sans-I/O WebSocket protocol with the ``aisetl.ws.frames`` extension."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.queue: LightQueue[Any] = LightQueue()
            self.aisetl_frames = False  # the application accepted the extension
            self.aisetl_client_frames: ClientFrames | None = None  # from the handshake on
            self.aisetl_parts: list[bytes] = []
            self.aisetl_held_bytes = 0  # in aisetl_parts
            self.aisetl_sending = False  # a message sent in parts is open
            self.aisetl_held: list[bytes] | None = None  # frames waiting for one write
            self.aisetl_take: Any = None  # the application's TAKE
            self.aisetl_in_message = False  # parts of a message went out, its last has not
            self.aisetl_reading = False  # inside data_received

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if scope is not None:
                scope.setdefault("extensions", {})[EXTENSION] = {}

        def data_received(self, data: bytes) -> None:
            frames = self.aisetl_client_frames
            if frames is not None:
                self.aisetl_reading = True
                try:
                    frames.feed(data)
                finally:
                    self.aisetl_reading = False
                    if self.aisetl_held:  # the answers of the tasks taken in this read
                        self._aisetl_flush()
            else:  # the handshake request, which the HTTP protocol passes on whole
                super().data_received(data)
                if self.handshake_initiated:  # frames start after it
                    self.aisetl_client_frames = ClientFrames(
                        self._aisetl_may_take,
                        self._aisetl_take,
                        super().data_received,
                        self.config.ws_max_size,
                        self._aisetl_fail,
                    )
            if self.aisetl_held_bytes >= PART_MIN:  # the message goes on in later reads
                self._aisetl_deliver(more=True)

        def _aisetl_may_take(self) -> bool:
            """Whether a binary message may skip the library now."""
            return bool(
                self.aisetl_frames and self.conn.state is open_state and not self.conn.extensions
            )

        def handle_bytes(self, event: Any) -> None:
            if not self.aisetl_frames:
                super().handle_bytes(event)
                return
            self._aisetl_take(event.data, True, event.fin)

        def _aisetl_take(self, piece: bytes, first: bool, last: bool) -> None:
            """A piece of a binary message: a frame websockets parsed, or a piece that
            :class:`ClientFrames` took (``first``: it begins the message, ``last``: ends it)."""
            if first:
                self.curr_msg_data_type = "bytes"
                self.aisetl_parts = [piece]
                self.aisetl_held_bytes = len(piece)
            else:
                self.aisetl_parts.append(piece)
                self.aisetl_held_bytes += len(piece)
            if last:
                self._aisetl_deliver(more=False)

        def _aisetl_fail(self, code: int, reason: str) -> None:
            """A taken message broke the rules: fail the connection as websockets does."""
            self.aisetl_parts = []
            self.aisetl_held_bytes = 0
            if self.conn.state is open_state:
                self.conn.fail(code, reason)
                self.handle_parser_exception()  # (the close frame, the app told, closed)
            else:
                self.transport.close()

        def handle_cont(self, event: Any) -> None:
            if not self.aisetl_frames or self.curr_msg_data_type != "bytes":
                super().handle_cont(event)
                return
            self._aisetl_take(event.data, False, event.fin)

        def _aisetl_deliver(self, more: bool) -> None:
            parts, self.aisetl_parts = self.aisetl_parts, []
            self.aisetl_held_bytes = 0
            if self.close_sent:
                return
            data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
            whole, self.aisetl_in_message = not self.aisetl_in_message and not more, more
            take = self.aisetl_take
            if whole and take is not None and self.queue.empty():
                try:
                    if take(data, self._aisetl_send_now):
                        return
                except Exception:
                    self.logger.exception("the application failed a ws message it took")
                    self._aisetl_fail(1011, "internal error")
                    return
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data, MORE: more})
            if not self.read_paused:  # type: ignore[has-type]
                self.read_paused = True
                self.transport.pause_reading()

        async def send(self, message: Any) -> None:
            kind = message.get("type")
            if kind == "websocket.accept" and message.get(EXTENSION):
                self.aisetl_frames = True
                self.aisetl_take = message.get(TAKE)
            if kind == "websocket.send" and MORE not in message and self._aisetl_hold(message):
                return
            self._aisetl_flush()  # whatever was held goes first
            if kind != "websocket.send" or MORE not in message or not self.aisetl_frames:
                await super().send(message)
                return
            await self.writable.wait()
            if self.disconnected or self.close_sent:
                raise client_disconnected()
            data = message.get("bytes") or b""
            fin = not message[MORE]
            try:
                if self.aisetl_sending:
                    self.conn.send_continuation(data, fin=fin)
                else:
                    self.conn.send_binary(data, fin=fin)
            except invalid_state:
                raise client_disconnected() from None
            self.aisetl_sending = not fin
            self.transport.writelines(self.conn.data_to_send())

        def _aisetl_hold(self, message: Any) -> bool:
            """Queue a small whole message's frame for one write at the end of this loop turn
            (``False``: not the case for holding; send it the ordinary way)."""
            data = message.get("bytes")
            text = message.get("text")
            size = len(data) if data is not None else len(text or "") * 4
            if (
                size > HOLD_MAX
                or self.aisetl_sending
                or self.disconnected
                or self.close_sent
                or not self.handshake_complete
                or self.initial_response is not None
                or not self.writable.is_set()
            ):
                return False
            if data is None and text is None:
                return False
            if self.conn.extensions:  # (not ours: uvicorn's deflate is off in aisetl's config)
                return False
            if self.conn.state is not open_state:  # websockets would raise invalid_state
                raise client_disconnected()
            first, payload = (
                (WHOLE_BINARY, data) if data is not None else (WHOLE_TEXT, text.encode())
            )
            held = self.aisetl_held
            if held is None:
                held = self.aisetl_held = []
                if not self.aisetl_reading:  # (else written at the end of the read)
                    self.loop.call_soon(self._aisetl_flush)
            held += (server_head(first, len(payload)), payload)
            return True

        def _aisetl_send_now(self, data: bytes | str) -> bool:
            """Send a small whole message from a read (``False``: it must go through
            ``send``; nothing was sent)."""
            kind = "bytes" if isinstance(data, bytes) else "text"
            try:
                return bool(self._aisetl_hold({"type": "websocket.send", kind: data}))
            except client_disconnected:
                return False

        def _aisetl_flush(self) -> None:
            held, self.aisetl_held = self.aisetl_held, None
            if held and not self.transport.is_closing():
                self.transport.write(b"".join(held))

    return FrameProtocol


#: A whole message up to this size may wait for the end of the loop turn to be written.
HOLD_MAX = 64 * 1024
#: A message that goes on in later reads is passed on in parts of at least this size (each
#: part pauses reading until the application takes it: per read, that was two system calls
#: and a wake-up of the application for every few KiB of a large payload).
PART_MIN = 1024 * 1024


#: The protocol class to give uvicorn as ``ws=`` (``None``: use uvicorn's default).
FrameWebSocketProtocol: type[Any] | None = frame_protocol_or_none()
