"""A scripted WebSocket server (thread) that plays an ETL server's ``/ws`` in tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

Handler = Callable[[ServerConnection, "WSServer"], None]


@dataclass
class WSServer:
    """Runs ``handler(conn, server)`` per connection; records what happened."""

    handler: Handler
    port: int = 0
    connections: int = 0
    messages: list[bytes | str] = field(default_factory=list)
    closes: list[ConnectionClosed] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> WSServer:
        def run(conn: ServerConnection) -> None:
            with self.lock:
                self.connections += 1
                assert conn.request is not None
                self.paths.append(conn.request.path)
                self.user_agents.append(conn.request.headers.get("User-Agent", ""))
            try:
                self.handler(conn, self)
            except ConnectionClosed as exc:
                with self.lock:
                    self.closes.append(exc)

        self._server = serve(
            run, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def recv(self, conn: ServerConnection) -> bytes | str:
        """Receive one message and record it."""
        message = conn.recv(timeout=10)
        with self.lock:
            self.messages.append(message)
        return message

    def wait_for(self, condition: Callable[[WSServer], bool], timeout: float = 5.0) -> bool:
        """Poll ``condition(self)`` until true or ``timeout`` (handlers run on threads)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)


def upper_handler(conn: ServerConnection, server: WSServer) -> None:
    """Answer each task like a reference server: binary upper-cased bytes, FQN or payload."""
    import json
    from urllib.parse import unquote

    while True:
        control = json.loads(server.recv(conn))
        if control.get("fqn"):
            with open(unquote(control["fqn"]), "rb") as file:
                data = file.read()
        else:
            payload = server.recv(conn)
            assert isinstance(payload, bytes)
            data = payload
        conn.send(data.upper())
