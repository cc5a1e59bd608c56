"""The ASGI WebSocket pump: reads messages, runs tasks, sends answers in arrival order.

Every rule of the task protocol is in :mod:`aisetl.ws_protocol`; this module only moves
messages between the ASGI connection, that state machine and the flow. Tasks of one
connection run concurrently (up to ``AISETL_WS_INFLIGHT``) and are answered in the order
they arrived.

With ``frames`` (our uvicorn protocol, see :mod:`aisetl._uvicorn_ws`) a streaming transform
reads its payload message part by part as it arrives and its output goes out part by part
too, so memory stays flat whatever the object's size; such a task is the last one read until
its answer is sent. There, too, while the reader waits for a message and nothing it started
waits for room, a whole binary message is handled in the protocol's read
(:meth:`WebSocketSession.take_now`): the same steps, without the reader's wake-up, and a quick
task's answer written from that read.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from aisetl._uvicorn_ws import MORE as FRAMES_MORE
from aisetl.edge import ObjectRequest
from aisetl.light_queue import LightQueue
from aisetl.reply import Reply
from aisetl.sources import ClientGone, Failure
from aisetl.ws_protocol import (
    CONTROL_MAX,
    AnswerNow,
    Close,
    Dropped,
    Event,
    Oversized,
    Reading,
    RunTask,
    Send,
    StreamTask,
    WsTasks,
)

if TYPE_CHECKING:
    from aisetl.aio import LoopIO
    from aisetl.flow import Flow
    from aisetl.handoff import Handoff
    from aisetl.watch import Watch

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
SendASGI = Callable[[Message], Awaitable[None]]

#: Size of the parts a streamed ws reply is sent in (a 1 GiB object: 1024 frames).
WS_PART = 1024 * 1024


@dataclass
class _Streamed:
    """A task's reply whose content is sent as it is produced, in parts of one message."""

    reply: Reply
    request: ObjectRequest
    watch: Watch


Answer = Send | Close | _Streamed


class WebSocketSession:
    """One target connection, pumped through a :class:`~aisetl.ws_protocol.WsTasks`."""

    def __init__(
        self,
        flow: Flow,
        threads: Handoff,
        io_: LoopIO,
        receive: Receive,
        send: SendASGI,
        *,
        logger: logging.Logger,
        errors: str,
        inflight: int,
        frames: bool = False,
    ) -> None:
        self._flow = flow
        self._threads = threads
        self._io = io_
        self._receive = receive
        self._send = send
        self._logger = logger
        self._frames = frames
        self._tasks = WsTasks(
            logger,
            errors,
            streams=lambda request: frames and flow.wants_body_stream(request),
            observer=flow.observer,
        )
        self._replies: LightQueue[tuple[asyncio.Future[Answer], Watch] | None] = LightQueue(
            maxsize=inflight
        )
        self._watches: set[Watch] = set()  # tasks read and not answered yet
        # the task whose payload is being streamed: its reader, "answered", its future
        self._streaming: tuple[FrameReader, asyncio.Event, asyncio.Future[Answer]] | None = None
        self._streams_possible = frames and flow.streaming  # (tasks read part by part)
        self._idle = False  # the reader waits for the first part of a message

    async def run(self) -> None:
        """Read tasks until the target drops the connection."""
        writer = asyncio.ensure_future(self._write_replies())
        observer = self._flow.observer
        observer.ws_connection(1)
        try:
            while not writer.done():
                message = await self._read()
                if message is None:
                    break
                if not await self._dispatch(self._tasks.receive(message)):
                    break
                if self._streaming is not None and not await self._finish_streamed_payload(writer):
                    break
        finally:
            if not writer.done():
                await self._replies.put(None)
                await writer
            for watch in list(self._watches):  # the connection ended before their answers
                watch.gone()
                self._answered(watch)
            observer.ws_connection(-1)

    def _watch(self, request: ObjectRequest | None) -> Watch:
        watch = self._flow.watch_ws(request)
        self._watches.add(watch)
        self._flow.observer.ws_queued(1)
        return watch

    def _answered(self, watch: Watch) -> None:
        if watch in self._watches:
            self._watches.discard(watch)
            self._flow.observer.ws_queued(-1)
        watch.finish()

    async def _dispatch(self, events: list[Event]) -> bool:
        """Start the tasks the events name, in order; ``False`` when the connection ended."""
        for event in events:
            future: asyncio.Future[Answer] | None
            if isinstance(event, StreamTask):
                watch = self._watch(event.request)
                future = await self._stream_task(event.request, watch)
                if future is None:
                    watch.gone()
                    self._answered(watch)
                    return False
            else:
                started = self._start(event)
                if started is None:
                    continue
                watch, next_step = started
                if isinstance(next_step, Send):
                    if not await self._deliver(next_step, watch):
                        return False
                    continue
                future = next_step
            await self._replies.put((future, watch))
        return True

    def take_now(self, message: bytes, send_now: Callable[[bytes | str], bool]) -> bool:
        """Handle a whole binary message in the protocol's read, when the reader waits for
        the next one and nothing it started waits for room (``False``: nothing was done;
        queue it for the reader). ``send_now`` writes a small answer at once, or says no.

        The same steps as the reader's, without its two wake-ups: a quick task is answered
        from the read that brought its payload."""
        if (
            not self._idle
            or self._streams_possible
            or self._tasks.reading is not Reading.WHOLE
            or self._replies.full()
        ):
            return False
        for event in self._tasks.receive(message):
            assert not isinstance(event, StreamTask)  # (no streaming transform: see above)
            started = self._start(event)
            if started is None:
                continue
            watch, next_step = started
            if isinstance(next_step, Send):
                if send_now(next_step.data):
                    self._answered(watch)
                    continue
                next_step = _ready(asyncio.get_running_loop(), next_step)  # the writer sends it
            self._replies.put_nowait((next_step, watch))
        return True

    def _start(
        self, event: RunTask | AnswerNow | Dropped
    ) -> tuple[Watch, Send | asyncio.Future[Answer]] | None:
        """Open an event's watch and start its task (``None``: nothing to answer). Its answer
        to send now, when it was had at once and every earlier task is answered with the
        writer waiting; else the future of its answer, for the writer."""
        if isinstance(event, Dropped):
            self._logger.warning(
                "dropped a %d-byte ws message: the payload of the task with the invalid "
                "control message",
                event.size,
            )
            return None
        if isinstance(event, AnswerNow):
            watch = self._watch(None)
            watch.status = 400
            outcome: Answer | asyncio.Future[Answer] = event.answer
        else:
            watch = self._watch(event.request)
            outcome = self._run(event, watch)
        if isinstance(outcome, asyncio.Future):
            return watch, outcome
        if isinstance(outcome, Send) and self._replies.awaited():
            return watch, outcome
        return watch, _ready(asyncio.get_running_loop(), outcome)

    def _run(self, event: RunTask, watch: Watch) -> Answer | asyncio.Future[Answer]:
        """The task's answer when it could be had at once (a quick transform, run inline);
        otherwise the future of its answer."""
        flow, request, payload = self._flow, event.request, event.payload
        if flow.can_run_inline(request, payload):
            reply = flow.handle_inline(request, payload, watch)
            if reply is not None:
                return self._tasks.answer(watch.reply(reply), request)
        return asyncio.ensure_future(self._task_async(request, payload, watch))

    async def _read(self) -> bytes | str | Oversized | None:
        """The next message, its parts joined (in PROBE mode, capped); ``None``: closed."""
        self._idle = True
        try:
            message = await self._receive()
        finally:
            self._idle = False
        # (read as the tasks ask once it has come: take_now may have fed them meanwhile)
        reading = self._tasks.reading
        if message["type"] != "websocket.receive":
            return None
        data = message.get("bytes")
        if data is None:
            data = message.get("text") or ""
        if not message.get(FRAMES_MORE):
            return data
        parts, size = [data], len(data)
        while message.get(FRAMES_MORE):
            message = await self._receive()
            if message["type"] != "websocket.receive":
                return None
            part = message.get("bytes") or b""
            size += len(part)
            if reading is Reading.WHOLE or size <= CONTROL_MAX:
                parts.append(part)
        if reading is Reading.PROBE and size > CONTROL_MAX:
            return Oversized(size)
        return b"".join(p for p in parts if isinstance(p, bytes))

    async def _finish_streamed_payload(self, writer: asyncio.Future[None]) -> bool:
        """Wait until the streamed task was answered; drop what its transform left unread."""
        assert self._streaming is not None
        reader, answered, _ = self._streaming
        waiter: asyncio.Future[Any] = asyncio.ensure_future(answered.wait())
        await asyncio.wait((waiter, writer), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        self._streaming = None
        if writer.done():
            return False
        while reader.more:
            message = await self._receive()
            if message["type"] != "websocket.receive":
                return False
            reader.more = bool(message.get(FRAMES_MORE))
        return True

    async def _stream_task(
        self, request: ObjectRequest, watch: Watch
    ) -> asyncio.Future[Answer] | None:
        """A streaming transform fed by the payload's parts as they arrive."""
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return None
        first = message.get("bytes")
        if first is None:
            first = (message.get("text") or "").encode("utf-8")
        loop = asyncio.get_running_loop()
        reader = FrameReader(first, bool(message.get(FRAMES_MORE)), self._receive, loop)
        body = io.BufferedReader(reader, 256 * 1024)
        future = self._threads.run(self._task, request, body, watch)
        self._streaming = (reader, asyncio.Event(), future)
        return future

    async def _task_async(
        self, request: ObjectRequest, payload: bytes | None, watch: Watch
    ) -> Answer:
        reply = await self._flow.handle_async(request, payload, self._io, watch)
        if reply is None:
            return await self._threads.run(self._task, request, payload, watch)
        return self._tasks.answer(watch.reply(reply), request)

    def _task(
        self, request: ObjectRequest, payload: bytes | BinaryIO | None, watch: Watch
    ) -> Answer:
        """Run a task on a worker thread; a streamed result is joined unless frames are on."""
        reply = self._flow.handle(request, payload, watch)
        if reply.stream is not None and reply.status < 300:
            if self._frames:
                watch.reply(reply)
                return _Streamed(reply, request, watch)
            try:
                reply = Reply(reply.status, reply.headers, b"".join(reply.stream))
            except Failure as failure:
                reply = self._flow.failure_reply(request.path, failure)
        return self._tasks.answer(watch.reply(reply), request)

    async def _write_replies(self) -> None:
        while True:
            item = await self._replies.get()
            if item is None:
                return
            future, watch = item
            try:
                answer = await future
            except Exception as exc:
                self._logger.exception("ws task failed unexpectedly")
                answer = Send(f"Internal error: {type(exc).__name__}: {exc}")
                watch.status = 500
            going_on = await self._deliver(answer, watch)
            streaming = self._streaming
            if streaming is not None and future is streaming[2]:
                streaming[1].set()
            if not going_on:
                return

    async def _deliver(self, answer: Answer, watch: Watch) -> bool:
        """Send a task's answer and end its watch; ``False`` when the connection ended."""
        try:
            if isinstance(answer, _Streamed):
                return await self._send_streamed(answer)
            return await self._send_answer(answer)
        except OSError as exc:  # the target dropped the connection (a job ends that way)
            watch.gone()
            self._flow.client_gone(exc)
            return False
        except BaseException:
            watch.gone()
            raise
        finally:
            self._answered(watch)

    async def _send_answer(self, answer: Send | Close) -> bool:
        """Send one answer; ``False`` when it closed the connection."""
        if isinstance(answer, Close):
            await self._send({"type": "websocket.close", "code": answer.code})
            return False
        if isinstance(answer.data, bytes):
            await self._send({"type": "websocket.send", "bytes": answer.data})
        else:
            await self._send({"type": "websocket.send", "text": answer.data})
        return True

    async def _send_streamed(self, streamed: _Streamed) -> bool:
        """Send a streamed reply in parts of one binary message; ``False``: connection closed."""
        stream = streamed.reply.stream
        assert stream is not None
        started = False
        part = bytearray()
        try:
            while True:
                chunk = await self._threads.run(next, stream, None)
                if chunk is None:
                    break
                part += chunk
                if len(part) >= WS_PART:  # few, large frames: clients cap a message's frames
                    await self._send({"type": "websocket.send", "bytes": part, FRAMES_MORE: True})
                    part = bytearray()
                    started = True
        except Failure as failure:
            reply = self._flow.failure_reply(streamed.request.path, failure)
            if not started:
                streamed.watch.reply(reply)
            return await self._send_answer(
                self._tasks.stream_failed(reply, streamed.request, started)
            )
        except ClientGone as exc:
            self._flow.client_gone(exc)
            streamed.watch.gone()
            return False
        finally:
            streamed.reply.close()
        await self._send({"type": "websocket.send", "bytes": bytes(part), FRAMES_MORE: False})
        return True


def _ready(loop: asyncio.AbstractEventLoop, value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = loop.create_future()
    future.set_result(value)
    return future


async def _next(receive: Receive) -> Message:
    return await receive()


class FrameReader(io.RawIOBase):
    """The parts of one ws payload message, read by a transform on a worker thread."""

    def __init__(
        self, first: bytes, more: bool, receive: Receive, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._pending = memoryview(first)
        self.more = more  # parts still to come
        self._receive = receive
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if not self.more:
                return 0
            message = asyncio.run_coroutine_threadsafe(_next(self._receive), self._loop).result()
            if message["type"] != "websocket.receive":
                raise ClientGone("the connection closed before the whole payload arrived")
            self._pending = memoryview(message.get("bytes") or b"")
            self.more = bool(message.get(FRAMES_MORE))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
