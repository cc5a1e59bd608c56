"""The machine's ceiling: a minimal echo ETL server on uvloop + httptools (no framework).

It answers what the echo transform answers, in every mode the benchmark uses: a PUT with its
body (or the file named by ``etl_fqn``), a GET with the object it fetches from
``AIS_TARGET_URL``, a PUT with a hop by putting the body to the hop (answer 204), and ws tasks
over ``/ws`` (frames decoded by the sans-I/O protocol of ``websockets``). Nothing else: no
error handling beyond what the benchmark needs. The load generator cannot go faster than
against this server, so a server that reaches its numbers is limited by the generator.

``python -m benchmarks.rawecho --port P --workers N``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
from collections.abc import Awaitable
from urllib.parse import unquote

import httptools
import uvloop
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side
from websockets.utils import accept_key

from aisetl.http_client import HTTPClient
from aisetl.protocol import compose_direct_put_url, parse_pipeline, parse_query, sanitize_fqn

_TARGET_URL = os.environ.get("AIS_TARGET_URL", "")


class EchoProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive requests in order, or a WebSocket after upgrade."""

    def __init__(self, client: HTTPClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.queue: asyncio.Queue[Awaitable[tuple[bytes, bytes]]] = asyncio.Queue()
        self.ws: Protocol | None = None
        self.ws_parts: list[bytes] = []
        self.ws_control: dict[str, str] | None = None
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._ws_data(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :] if exc.args else b"")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.headers.get(b"upgrade", b"").lower() == b"websocket":
            return
        method = self.parser.get_method()
        url, headers, body = self.url, self.headers, b"".join(self.body)
        self.queue.put_nowait(self._answer(method, url, headers, body))

    async def _write(self) -> None:
        while True:
            head, body = await (await self.queue.get())
            if self.transport is not None and not self.transport.is_closing():
                self.transport.writelines([head, body] if body else [head])

    async def _answer(
        self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[bytes, bytes]:
        path, _, query = url.decode("latin-1").partition("?")
        if path == "/health":
            return _reply(200, b"Running")
        params = parse_query(query) if query else {}
        fqn = params.get("etl_fqn")
        if fqn:
            with open(sanitize_fqn(fqn), "rb") as file:
                data = file.read()
        elif method == b"GET":
            response = await self.client.request("GET", f"{_TARGET_URL}{path}", timeout=60)
            data = response.body
        else:
            data = body
        hops = headers.get(b"ais-node-url")
        if hops:
            hop, rest = parse_pipeline(hops.decode("latin-1"))
            target = compose_direct_put_url(hop, _TARGET_URL, unquote(path.lstrip("/")), "")
            extra = {"Ais-Node-Url": rest} if rest else {}
            await self.client.request("PUT", target, headers=extra, body=data, timeout=60)
            return _reply(204, b"", f"Ais-Direct-Put-Length: {len(data)}\r\n".encode())
        return _reply(200, data)

    # WebSocket
    def _upgrade(self, rest: bytes) -> None:
        accept = accept_key(self.headers.get(b"sec-websocket-key", b"").decode()).encode()
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.ws = Protocol(Side.SERVER, max_size=None)
        if rest:
            self._ws_data(rest)

    def _ws_data(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None and self.transport is not None
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        for chunk in ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode not in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
            return
        self.ws_parts.append(bytes(frame.data))
        if not frame.fin:
            return
        message, self.ws_parts = b"".join(self.ws_parts), []
        if self.ws_control is None:
            control = json.loads(message)
            if control.get("fqn"):
                with open(sanitize_fqn(control["fqn"]), "rb") as file:
                    self._ws_send(file.read())
                return
            self.ws_control = control
            return
        self.ws_control = None
        self._ws_send(message)

    def _ws_send(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None and self.transport is not None
        ws.send_binary(data)
        for chunk in ws.data_to_send():
            self.transport.write(chunk)


def _reply(status: int, body: bytes, extra: bytes = b"") -> tuple[bytes, bytes]:
    reason = b"OK" if status == 200 else b"No Content"
    length = b"" if status == 204 else b"Content-Length: %d\r\n" % len(body)
    return b"HTTP/1.1 %d %s\r\n%s%s\r\n" % (status, reason, length, extra), body


async def _serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    client = HTTPClient(max_idle_per_host=256)
    server = await loop.create_server(lambda: EchoProtocol(client), sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    """Listen on 127.0.0.1:PORT with N forked workers until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            uvloop.run(_serve(sock))
            os._exit(0)
        children.append(pid)
    try:
        uvloop.run(_serve(sock))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
