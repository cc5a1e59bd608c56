"""Scripted raw TCP servers that play misbehaving ETL servers in tests."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RawRequest:
    """A request as a raw server saw it."""

    head: bytes
    body: bytes
    method: str = ""
    uri: str = ""


Script = Callable[[RawRequest, socket.socket, int], "bytes | None"]


@dataclass
class RawServer:
    """A threaded TCP server that answers with whatever bytes ``script`` returns.

    ``script(request, conn, n)`` gets the parsed request, the socket and the 0-based request
    number; it returns the bytes to send (the connection stays open for keep-alive) or
    ``None`` after handling the socket itself (the connection is then closed).
    """

    script: Script
    requests: list[RawRequest] = field(default_factory=list)
    port: int = 0
    _sock: socket.socket | None = None
    _stop: bool = False
    _threads: list[threading.Thread] = field(default_factory=list)
    _conns: list[socket.socket] = field(default_factory=list)

    def start(self) -> RawServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(0.1)
        self._sock = sock
        self.port = sock.getsockname()[1]
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        assert self._sock is not None
        deadline = time.monotonic() + 60
        while not self._stop and time.monotonic() < deadline:
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        self._conns.append(conn)
        conn.settimeout(10)
        buffer = b""
        try:
            for _ in range(1000):
                request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                index = len(self.requests)
                self.requests.append(request)
                answer = self.script(request, conn, index)
                if answer is None:
                    return
                conn.sendall(answer)
        except OSError:
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop = True
        if self._sock is not None:
            self._sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(2)


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[RawRequest | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    head += b"\r\n\r\n"
    lines = head.decode("latin-1").split("\r\n")
    method, uri, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
    headers = {
        line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
        for line in lines[1:]
        if ":" in line
    }
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += conn.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += conn.recv(65536)
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                break
    else:
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            rest += chunk
        body, rest = rest[:length], rest[length:]
    return RawRequest(head, body, method, uri), rest


def response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A plain HTTP/1.1 response with ``Content-Length``."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def reset(conn: socket.socket) -> None:
    """Close with RST."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
