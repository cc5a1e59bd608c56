"""WebSocket connection pools as a target keeps them (§7.2-§7.6).

Tasks go to a shared queue; each connection's writer takes the next one and sends it without
waiting for earlier replies (pipelining); each reply is matched to the oldest task still
outstanding on that connection. A binary reply is the result, a text reply means "delivered
by direct put".

When a connection dies, its outstanding tasks are not failed: a Go target never resends them,
and they stay pending until the job is aborted (§7.6). A pool whose connections are all gone is
never dialed again, so a task submitted to it waits too. :meth:`WSPool.submit` therefore takes
the deadline the job would be aborted at, and fails a task that reaches it with the reason it
was stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from aisetl.target.record import WS, Record, Recorder
from aisetl.target.wire import GO_USER_AGENT

#: Close codes after which a target's reader stops silently.
NORMAL_CLOSE_CODES = frozenset({1000, 1001, 1012})
#: Payload bytes per frame, as gorilla/websocket's default write buffer splits messages.
DEFAULT_FRAGMENT_SIZE = 4096


class WSError(Exception):
    """A ws task could not be sent or its connection died before the reply."""


class _Task:
    __slots__ = ("control", "future", "payload", "stranded")

    def __init__(self, control: bytes, payload: bytes | None) -> None:
        self.control = control
        self.payload = payload
        self.future: asyncio.Future[bytes | str] = asyncio.get_running_loop().create_future()
        self.stranded = ""  # why no reply can come any more (the connection died)


class _Connection:
    """One pooled connection with its writer and reader loops."""

    def __init__(self, pool: WSPool, index: int, ws: ClientConnection) -> None:
        self.pool = pool
        self.index = index
        self.ws = ws
        self.outstanding: deque[_Task] = deque()
        self.sent = asyncio.Event()
        self.alive = True
        loop = asyncio.get_running_loop()
        self.writer = loop.create_task(self._write_loop())
        self.reader = loop.create_task(self._read_loop())

    def _record(self, method: str, opcode: str, data: bytes, length: int) -> None:
        recorder = self.pool.recorder
        if recorder is not None and recorder.enabled:
            recorder.add(
                Record(
                    side=WS,
                    target=self.pool.node,
                    method=method,
                    uri=self.pool.url,
                    opcode=opcode,
                    data=data,
                    body_len=length,
                    connection=self.index,
                )
            )

    async def _write_loop(self) -> None:
        queue = self.pool._queue
        while self.alive:
            task = await queue.get()
            if task.future.done():
                continue
            try:
                await self.ws.send(task.control)
                self._record("send", "binary", task.control, len(task.control))
                if task.payload is not None:
                    await self._send_payload(task.payload)
                    self._record("send", "binary", b"", len(task.payload))
            except Exception as exc:
                if not task.future.done():
                    task.future.set_exception(
                        WSError(f"error writing control message {self.name}: {exc}")
                    )
                self._die(f"error writing to {self.name}: {exc}", record=False)
                return
            self.outstanding.append(task)
            self.sent.set()

    async def _send_payload(self, payload: bytes) -> None:
        size = self.pool.fragment_size
        if size and len(payload) > size:
            view = memoryview(payload)
            await self.ws.send([view[i : i + size] for i in range(0, len(payload), size)])
        else:
            await self.ws.send(payload)

    async def _read_loop(self) -> None:
        while self.alive:
            try:
                message = await self.ws.recv()
            except ConnectionClosed as exc:
                self._die(self._close_text(exc), record=not self._benign(exc))
                return
            except Exception as exc:
                self._die(f"error reading message from {self.name}: {exc}", record=True)
                return
            kind = "text" if isinstance(message, str) else "binary"
            self._record("recv", kind, b"", len(message))
            while not self.outstanding:
                # A reply before its task was written: a target matches it to the next task.
                self.sent.clear()
                await self.sent.wait()
            task = self.outstanding.popleft()
            if not task.future.done():
                task.future.set_result(message)

    @property
    def name(self) -> str:
        return f"{self.pool.name}-{self.index}"

    @staticmethod
    def _benign(exc: ConnectionClosed) -> bool:
        if exc.rcvd is not None and exc.rcvd.code in NORMAL_CLOSE_CODES:
            return True
        return isinstance(exc.__cause__, (ConnectionResetError, BrokenPipeError))

    def _close_text(self, exc: ConnectionClosed) -> str:
        if exc.rcvd is not None:
            return f"error reading message from {self.name}: websocket: close {exc.rcvd.code}"
        return (
            f"error reading message from {self.name}: websocket: close 1006 "
            "(abnormal closure): unexpected EOF"
        )

    def _die(self, reason: str, *, record: bool) -> None:
        if not self.alive:
            return
        self.alive = False
        if record:
            self.pool.errors.append(reason)
        for task in self.outstanding:  # a target never resends them: they hang (§7.6)
            task.stranded = f"its ws connection closed with the task outstanding ({reason})"
        self.outstanding.clear()
        current = asyncio.current_task()
        for loop_task in (self.writer, self.reader):
            if loop_task is not current:
                loop_task.cancel()
        self.abort()
        self.pool._connection_died()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()


class WSPool:
    """``size`` connections to one server's ``/ws`` sharing a task queue.

    ``fragment_size`` splits payload messages into frames like a Go target does (``0``: one
    frame per message). ``errors`` collects read errors a target would record.
    """

    def __init__(
        self,
        url: str,
        size: int,
        *,
        name: str = "ws",
        node: str = "t0",
        recorder: Recorder | None = None,
        fragment_size: int = DEFAULT_FRAGMENT_SIZE,
        open_timeout: float = 45.0,
    ) -> None:
        if size < 1:
            raise ValueError("a ws pool needs at least one connection")
        self.url = url
        self.size = size
        self.name = name
        self.node = node
        self.recorder = recorder
        self.fragment_size = fragment_size
        self.open_timeout = open_timeout
        self.errors: list[str] = []
        self.connections: list[_Connection] = []
        self._queue: asyncio.Queue[_Task] = asyncio.Queue()
        self._closed = False

    @property
    def live(self) -> int:
        """Connections still open."""
        return sum(1 for conn in self.connections if conn.alive)

    async def open(self) -> None:
        """Open every connection; if one handshake fails, close the others and raise."""
        results = await asyncio.gather(
            *(self._dial() for _ in range(self.size)), return_exceptions=True
        )
        failures = [item for item in results if isinstance(item, BaseException)]
        if failures:
            for item in results:
                if isinstance(item, ClientConnection) and item.transport is not None:
                    item.transport.abort()
            self._closed = True
            if not isinstance(failures[0], Exception):
                raise failures[0]
            raise WSError(f"{self.name}: failed to dial {self.url}: {failures[0]}")
        for index, item in enumerate(results):
            assert isinstance(item, ClientConnection)
            self.connections.append(_Connection(self, index, item))

    async def _dial(self) -> ClientConnection:
        return await connect(
            self.url,
            compression=None,
            max_size=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=1,
            open_timeout=self.open_timeout,
            user_agent_header=GO_USER_AGENT,
            proxy=None,
        )

    async def submit(
        self, control: bytes, payload: bytes | None, deadline: float | None = None
    ) -> bytes | str:
        """Queue one task; return the reply (``bytes`` = result, ``str`` = delivered).

        ``deadline`` (seconds) stands for the job's abort: a task still unanswered then fails
        with :class:`WSError`, saying why it hung.
        """
        if self._closed:
            raise WSError(f"{self.name}: pool closed")
        task = _Task(control, payload)
        if self.live:
            self._queue.put_nowait(task)
        else:
            task.stranded = "no open ws connection: a target never dials its ws pool again"
        try:
            return await asyncio.wait_for(asyncio.shield(task.future), deadline)
        except asyncio.TimeoutError:
            task.future.cancel()  # the writer skips it, a late reply is matched and dropped
            why = task.stranded or "the server sent no reply"
            raise WSError(
                f"no ws reply within {deadline:g} s: {why}; in a cluster the job would stall "
                "until it is aborted (PROTOCOL.md §7.6)"
            ) from None

    def drop(self, index: int | None = None) -> None:
        """Fault injection: drop one connection (or all) without a close frame."""
        for conn in self.connections:
            if index is None or conn.index == index:
                conn.abort()

    async def close_connection(self, index: int, code: int = 1000) -> None:
        """Close one connection from the target side with a close frame."""
        with contextlib.suppress(Exception):
            await self.connections[index].ws.close(code)

    def _connection_died(self) -> None:
        if self.live:
            return
        while not self._queue.empty():  # no writer will ever take them
            task = self._queue.get_nowait()
            task.stranded = "no open ws connection: a target never dials its ws pool again"

    async def close(self) -> None:
        """End the pool as a target ends a job: drop every connection (no close frame)."""
        self._closed = True
        for conn in self.connections:
            conn.alive = False
            conn.writer.cancel()
            conn.reader.cancel()
            conn.abort()
            for task in conn.outstanding:
                if not task.future.done():
                    task.future.set_exception(WSError(f"{self.name}: pool closed"))
            conn.outstanding.clear()
        while not self._queue.empty():
            task = self._queue.get_nowait()
            if not task.future.done():
                task.future.set_exception(WSError(f"{self.name}: pool closed"))
        loops = [task for conn in self.connections for task in (conn.writer, conn.reader)]
        if loops:
            await asyncio.wait(loops, timeout=1.0)
