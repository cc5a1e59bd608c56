"""uvicorn's WebSocket protocol, able to pass binary messages frame by frame.

ASGI hands an application whole WebSocket messages, and uvicorn assembles each one in memory
(its frames, then their join) before the application sees a byte: a 1 GiB object sent over
ws costs gigabytes. This subclass of uvicorn's own ``websockets`` sans-I/O protocol adds an
opt-in extension, announced in the scope as ``aisetl.ws.frames``:

* an application that accepts with ``{"type": "websocket.accept", "aisetl.ws.frames": True}``
  receives binary messages in parts as they arrive: ``{"type": "websocket.receive", "bytes":
  part, "aisetl.more": True}``, ..., and a last part with ``"aisetl.more": False``; reading
  pauses until the application has taken each part, so memory does not grow with the message;
* it may send a binary message in parts: ``{"type": "websocket.send", "bytes": part,
  "aisetl.more": True}``, ..., and a last one with ``"aisetl.more": False``, each written as
  one frame when the transport has room.

Applications that do not opt in (user routes, any other app) get plain ASGI. Text messages
are always whole.

Small whole messages sent in one turn of the event loop (the answers of pipelined tasks that
finished together) go out in one write instead of one system call each.

Without uvicorn's sans-I/O protocol (older uvicorn), nothing changes:
:data:`FrameWebSocketProtocol` is ``None`` and uvicorn's default is used.
"""

from __future__ import annotations

from typing import Any

EXTENSION = "aisetl.ws.frames"
MORE = "aisetl.more"


def _build() -> type[Any] | None:
    try:
        from uvicorn.protocols.websockets import websockets_sansio_impl
    except ImportError:  # pragma: no cover - uvicorn before the sans-I/O protocol
        return None
    base: type[Any] = websockets_sansio_impl.WebSocketsSansIOProtocol
    needed = ("handle_connect", "handle_bytes", "handle_cont", "send", "data_received")
    if not all(hasattr(base, name) for name in needed):  # pragma: no cover - unknown uvicorn
        return None

    class FrameProtocol(base):  # type: ignore[misc]
        """uvicorn's sans-I/O WebSocket protocol with the ``aisetl.ws.frames`` extension."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.aisetl_frames = False  # the application accepted the extension
            self.aisetl_parts: list[bytes] = []
            self.aisetl_sending = False  # a message sent in parts is open
            self.aisetl_held: list[bytes] | None = None  # frames waiting for one write

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if scope is not None:
                scope.setdefault("extensions", {})[EXTENSION] = {}

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.aisetl_parts:  # the message goes on in later reads: pass on what came
                self._aisetl_deliver(more=True)

        def handle_bytes(self, event: Any) -> None:
            if not self.aisetl_frames:
                super().handle_bytes(event)
                return
            self.curr_msg_data_type = "bytes"
            self.aisetl_parts = [event.data]
            if event.fin:
                self._aisetl_deliver(more=False)

        def handle_cont(self, event: Any) -> None:
            if not self.aisetl_frames or self.curr_msg_data_type != "bytes":
                super().handle_cont(event)
                return
            self.aisetl_parts.append(event.data)
            if event.fin:
                self._aisetl_deliver(more=False)

        def _aisetl_deliver(self, more: bool) -> None:
            parts, self.aisetl_parts = self.aisetl_parts, []
            if self.close_sent:
                return
            data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data, MORE: more})
            if not self.read_paused:  # type: ignore[has-type]
                self.read_paused = True
                self.transport.pause_reading()

        async def send(self, message: Any) -> None:
            kind = message.get("type")
            if kind == "websocket.accept" and message.get(EXTENSION):
                self.aisetl_frames = True
            if kind == "websocket.send" and MORE not in message and self._aisetl_hold(message):
                return
            self._aisetl_flush()  # whatever was held goes first
            if kind != "websocket.send" or MORE not in message or not self.aisetl_frames:
                await super().send(message)
                return
            await self.writable.wait()
            if self.disconnected or self.close_sent:
                from uvicorn.protocols.utils import ClientDisconnected

                raise ClientDisconnected()
            data = message.get("bytes") or b""
            fin = not message[MORE]
            if self.aisetl_sending:
                self.conn.send_continuation(data, fin=fin)
            else:
                self.conn.send_binary(data, fin=fin)
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
            if data is not None:
                self.conn.send_binary(data)
            elif text is not None:
                self.conn.send_text(text.encode())
            else:
                return False
            held = self.aisetl_held
            if held is None:
                held = self.aisetl_held = []
                self.loop.call_soon(self._aisetl_flush)
            held.extend(self.conn.data_to_send())
            return True

        def _aisetl_flush(self) -> None:
            held, self.aisetl_held = self.aisetl_held, None
            if held and not self.transport.is_closing():
                self.transport.write(b"".join(held))

    return FrameProtocol


#: A whole message up to this size may wait for the end of the loop turn to be written.
HOLD_MAX = 64 * 1024


#: The protocol class to give uvicorn as ``ws=`` (``None``: use uvicorn's default).
FrameWebSocketProtocol: type[Any] | None = _build()
