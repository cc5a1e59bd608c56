"""The HTTP client and server under the emulator: framing, keep-alive, errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from aisetl.http_client import EOF, READ, RESET, HTTPClient, TransportError
from aisetl.target.http import HTTPServer, Reply, Request

from .rawserver import RawRequest, RawServer, Script, reset, response

MakeServer = Callable[[Script], RawServer]


async def echo(request: Request) -> Reply:
    return Reply(200, request.body.upper(), [("X-Method", request.method)])


def test_request_framing_and_keep_alive() -> None:
    async def main() -> None:
        server = HTTPServer(echo)
        await server.start()
        client = HTTPClient()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"as"
            yield b"ync"

        try:
            assert (await client.request("PUT", server.url + "/a", body=b"abc")).body == b"ABC"
            assert (await client.request("PUT", server.url + "/a", body=[b"x", b"y"])).body == (
                b"XY"
            )
            assert (await client.request("PUT", server.url + "/a", body=chunks())).body == (
                b"ASYNC"
            )
            head = await client.request("HEAD", server.url + "/a")
            assert head.status == 200 and head.body == b"" and head.framing == "none"
            big = bytes(range(256)) * 8192  # 2 MiB each way
            assert (await client.request("PUT", server.url + "/a", body=big)).body == big.upper()
            assert len(server._connections) == 1  # every request reused one connection
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_response_framings(raw_server: MakeServer) -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof",
    ]

    def script(request: RawRequest, conn: socket.socket, n: int) -> bytes | None:
        if n == 2:
            conn.sendall(answers[2])
            return None
        return answers[n]

    server = raw_server(script)

    async def main() -> list[tuple[int, bytes, str]]:
        client = HTTPClient()
        try:
            return [
                (r.status, r.body, r.framing)
                for r in [await client.request("GET", server.url + "/") for _ in range(3)]
            ]
        finally:
            await client.close()

    assert asyncio.run(main()) == [
        (200, b"ok", "length"),
        (204, b"", "none"),
        (200, b"until-eof", "close"),
    ]


@pytest.mark.parametrize(("method", "replayed"), [("GET", True), ("PUT", False)])
def test_replay_on_a_reused_connection(raw_server: MakeServer, method: str, replayed: bool) -> None:
    """A request that fails on a reused connection before any response byte is sent again
    only when Go would replay it (an idempotent GET without a body)."""

    def script(request: RawRequest, conn: socket.socket, n: int) -> bytes | None:
        if n == 1:
            reset(conn)
            return None
        return response(200, b"fine")

    server = raw_server(script)

    async def main() -> bytes | str:
        client = HTTPClient()
        try:
            await client.request(method, server.url + "/")
            return (await client.request(method, server.url + "/")).body
        except TransportError as exc:
            return exc.kind
        finally:
            await client.close()

    assert asyncio.run(main()) == (b"fine" if replayed else RESET)
    assert len(server.requests) == (3 if replayed else 2)


@pytest.mark.parametrize(
    ("answer", "kind", "after_headers"),
    [
        (None, EOF, False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", READ, True),
        ("reset", RESET, False),
    ],
)
def test_transport_errors(
    raw_server: MakeServer, answer: bytes | str | None, kind: str, after_headers: bool
) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> None:
        if answer == "reset":
            reset(conn)
            return
        if isinstance(answer, bytes):
            conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)

    server = raw_server(script)

    async def main() -> TransportError:
        client = HTTPClient()
        try:
            await client.request("PUT", server.url + "/", body=b"x")
        except TransportError as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("no error")

    error = asyncio.run(main())
    assert (error.kind, error.after_headers) == (kind, after_headers)
    assert error.retriable == (kind == RESET)


def test_idle_connections_expire() -> None:
    async def main() -> int:
        server = HTTPServer(echo)
        await server.start()
        client = HTTPClient(idle_timeout=0.05)
        try:
            await client.request("GET", server.url + "/")
            await asyncio.sleep(0.2)
            return len(server._connections)
        finally:
            await client.close()
            await server.close()

    assert asyncio.run(main()) == 0
