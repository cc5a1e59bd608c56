"""Ports for started servers: picking, holding, and telling whose listener answers."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisetl.http_client import HTTPClient
from aisetl.target import ServerStartError, free_port, start_server
from aisetl.target import ports as ports_module
from aisetl.target import process as process_module
from aisetl.target.ports import PortLease, listener_is_ours

#: A server that waits ``delay`` seconds (an interpreter's imports) before it listens.
SLOW_SERVER = """
import http.server, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
time.sleep(delay)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ours"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Thief:
    """A healthy server of this process that listens on ``port`` (with ``SO_REUSEADDR``)."""

    def __init__(self, port: int) -> None:
        self.httpd = http.server.HTTPServer(("127.0.0.1", port), _Healthy)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def slow_server(tmp_path: Path) -> str:
    path = tmp_path / "slow_server.py"
    path.write_text(SLOW_SERVER)
    return str(path)


@pytest.fixture
def thieves() -> Iterator[list[_Thief]]:
    taken: list[_Thief] = []
    yield taken
    for thief in taken:
        thief.close()


def _start(argv: list[str], tmp_path: Path, **kwargs: object) -> process_module.ServerProcess:
    async def go() -> process_module.ServerProcess:
        client = HTTPClient()
        try:
            return await start_server(
                argv,
                target_url="http://127.0.0.1:1",
                client=client,
                log_path=tmp_path / "server.log",
                **kwargs,  # type: ignore[arg-type]
            )
        finally:
            await client.close()

    return asyncio.run(go())


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    low = ports_module._ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(max(1024, low - ports_module.PORT_SPAN) <= port < low for port in ports), ports
    for port in ports:  # free: a server can listen there
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_falls_back_to_the_kernel_when_the_span_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        monkeypatch.setattr(ports_module.random, "randrange", lambda _lo, _hi: busy)
        port = free_port()
    assert port != busy and port > 0


def test_a_held_port_is_refused_to_other_picks_yet_its_server_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PortLease() as lease:
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", lease.port))
        held = lease.port
        picks = iter([held, held, held])
        monkeypatch.setattr(
            ports_module.random, "randrange", lambda lo, hi: next(picks, (lo + hi) // 2)
        )
        assert free_port() != held  # another test process's pick skips it
        picks = iter([held, held, held])
        with PortLease() as other:  # and so does its lease
            assert other.port != held
        with socket.socket() as server:  # the server it is for binds as servers do
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", held))
            server.listen()
            with socket.create_connection(("127.0.0.1", held), timeout=5):
                pass
    lease.release()  # idempotent


def test_listener_is_ours_tells_whose_socket_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listener_is_ours(os.getsid(0), port) is True
        other = os.getsid(0) + 1 if os.getsid(0) > 1 else 2
        assert listener_is_ours(other, port) is False


def test_a_listener_in_another_pid_namespace_is_not_called_foreign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A container's server (``docker run`` started it, not our child) is trusted."""
    here = ports_module._pid_namespace("self")
    monkeypatch.setattr(
        ports_module,
        "_pid_namespace",
        lambda pid: here if pid == "self" else "pid:[4026532999]",
    )
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listener_is_ours(os.getsid(0), port) is True  # (the session decides first)
        other = os.getsid(0) + 1 if os.getsid(0) > 1 else 2
        assert listener_is_ours(other, port) is None


def test_a_started_server_listens_in_its_own_session(slow_server: str, tmp_path: Path) -> None:
    process = _start([sys.executable, slow_server, "{port}", "0"], tmp_path)
    try:
        assert listener_is_ours(process.pid, process.port) is True
        assert listener_is_ours(os.getsid(0), process.port) is False
    finally:
        process.stop()


def test_health_answered_by_another_server_is_not_taken_for_ours(
    slow_server: str, tmp_path: Path, thieves: list[_Thief]
) -> None:
    """The failure it mends: a server that could not listen seemed healthy, because
    another test's server answered ``/health`` on the same port; every request then went
    to that other server."""
    port = free_port()
    thieves.append(_Thief(port))
    with pytest.raises(ServerStartError, match="answered by another process") as info:
        _start([sys.executable, slow_server, "{port}", "1.5"], tmp_path, port=port)
    assert info.value.port_taken


def test_a_start_moves_to_another_port_when_its_port_is_taken(
    slow_server: str,
    tmp_path: Path,
    thieves: list[_Thief],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leased: list[int] = []

    class RacedLease(PortLease):
        """The first port held is then taken by another server, as in a race."""

        def __init__(self, host: str = "127.0.0.1") -> None:
            super().__init__(host)
            leased.append(self.port)
            if len(leased) == 1:
                thieves.append(_Thief(self.port))

    monkeypatch.setattr(process_module, "PortLease", RacedLease)
    process = _start([sys.executable, slow_server, "{port}", "1.0"], tmp_path)
    try:
        assert len(leased) == 2 and process.port == leased[1] != leased[0]
        assert listener_is_ours(process.pid, process.port) is True
    finally:
        process.stop()


def test_a_server_that_cannot_listen_on_a_fixed_port_says_so(
    slow_server: str, tmp_path: Path, thieves: list[_Thief], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    thieves.append(_Thief(port))
    original = process_module.ServerProcess.wait_healthy

    async def after_its_exit(
        self: process_module.ServerProcess, client: HTTPClient, timeout: float = 45.0
    ) -> None:
        await asyncio.to_thread(self.proc.wait, timeout)  # the exit, not the thief, answers
        await original(self, client, timeout)

    monkeypatch.setattr(process_module.ServerProcess, "wait_healthy", after_its_exit)
    with pytest.raises(ServerStartError, match="exited with code 1") as info:
        _start([sys.executable, slow_server, "{port}", "0"], tmp_path, port=port)
    assert info.value.port_taken and "Address already in use" in info.value.log
