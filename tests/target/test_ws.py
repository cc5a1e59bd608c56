"""ws:// as a target drives it (§7, TV-48..TV-52), against scripted WebSocket servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.server import ServerConnection

from aisetl.target import Cluster, EmulatedTarget, TransformResult

from .wsserver import Handler, WSServer, upper_handler

MakeWS = Callable[[Handler], WSServer]


@pytest.fixture
def ws_server() -> Iterator[MakeWS]:
    servers: list[WSServer] = []

    def make(handler: Handler) -> WSServer:
        server = WSServer(handler).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def tgt() -> Iterator[EmulatedTarget]:
    with EmulatedTarget(multiplier=1, ws_timeout=10) as target:
        bucket = target.bucket("b")
        for name, data in {"a": b"aa", "b": b"bbb", "cat 1.jpg": b"hello world", "e": b""}.items():
            bucket.put(name, data)
        yield target


def test_inline_pool_handshake(tgt: EmulatedTarget, ws_server: MakeWS) -> None:
    server = ws_server(upper_handler)
    etl = tgt.attach("ws-etl", server.url, comm="ws")
    assert server.wait_for(lambda s: s.connections == 1) and server.paths == ["/ws"]
    assert server.user_agents == ["Go-http-client/1.1"]
    assert etl.inline_pools[0].size == 1


def test_tv48_fqn_task(tgt: EmulatedTarget, ws_server: MakeWS) -> None:
    server = ws_server(upper_handler)
    tgt.attach("ws-etl", server.url, comm="ws")
    result = tgt.ws("ws-etl", "b", "cat 1.jpg")
    assert result.ok and result.content == b"HELLO WORLD"
    (control,) = server.messages  # no payload message in FQN mode
    assert isinstance(control, bytes)  # a binary frame
    fqn = tgt.bucket("b").fqn("cat 1.jpg")
    assert json.loads(control) == {
        "fqn": fqn.replace("%", "%25").replace("/", "%2F").replace(" ", "%20"),
        "path": "cat 1.jpg",
    }


def test_tv49_body_tasks(tgt: EmulatedTarget, ws_server: MakeWS) -> None:
    server = ws_server(upper_handler)
    tgt.attach("ws-etl", server.url, comm="ws")
    assert tgt.ws("ws-etl", "b", "cat 1.jpg", fqn=False, etl_args="q=1").content == b"HELLO WORLD"
    assert tgt.ws("ws-etl", "b", "e", fqn=False).content == b""
    assert server.messages == [
        b'{"etl_args":"q=1","path":"cat 1.jpg"}',
        b"hello world",
        b'{"path":"e"}',
        b"",
    ]


def test_large_payload_is_fragmented_and_reassembled(
    tgt: EmulatedTarget, ws_server: MakeWS
) -> None:
    server = ws_server(upper_handler)
    tgt.attach("ws-etl", server.url, comm="ws")
    data = bytes(range(256)) * 400  # 100 KiB: 25 frames of 4 KiB
    tgt.bucket("b").put("big", data)
    assert tgt.ws("ws-etl", "b", "big", fqn=False).content == data.upper()


def pipelined(conn: ServerConnection, server: WSServer) -> None:
    """TV-52: read both tasks before answering anything."""
    received = [server.recv(conn) for _ in range(4)]
    assert received[0] == b'{"path":"a"}' and received[2] == b'{"path":"b"}'
    conn.send(b"AA")
    conn.send("delivered")
    conn.recv(timeout=10)


def test_tv52_pipelined_fifo(tgt: EmulatedTarget, ws_server: MakeWS) -> None:
    server = ws_server(pipelined)
    etl = tgt.attach("ws-etl", server.url, comm="ws")
    core = tgt.core

    async def both() -> list[TransformResult]:
        first = asyncio.ensure_future(core.transform(etl, "b", "a", fqn=False))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(core.transform(etl, "b", "b", fqn=False))
        return list(await asyncio.gather(first, second))

    first, second = tgt.cluster.run(both(), timeout=10)
    assert first.content == b"AA" and not first.delivered
    # The text reply is matched to the second task; with no pipeline it is a silent loss.
    assert second.text == "delivered" and second.content is None and second.lost is not None
    sends = tgt.records("ws", method="send")
    assert [(r.opcode, r.body_len) for r in sends] == [
        ("binary", 12),
        ("binary", 2),
        ("binary", 12),
        ("binary", 3),
    ]


def test_binary_reply_without_sink_is_an_error(ws_server: MakeWS) -> None:
    server = ws_server(upper_handler)
    with Cluster(targets=2, placement="remote", multiplier=1) as cluster:
        cluster.targets[0].bucket("b").put("a", b"aa")
        cluster.bucket("dst")
        cluster.attach("ws-etl", server.url, comm="ws")
        result = cluster.targets[0].ws("ws-etl", "b", "a", dst=("dst", "a"))
    assert result.error is not None
    assert result.error.msg.startswith("task.w is nil, expected direct put")
    control = json.loads(server.messages[0])
    assert control["pipeline"].endswith("/ais%2F@%23%2Fdst%2Fa")


def hang_up(conn: ServerConnection, server: WSServer) -> None:
    server.recv(conn)
    server.recv(conn)
    conn.close_socket()  # no close frame: abnormal closure


def test_server_drops_connection(ws_server: MakeWS) -> None:
    """§7.6: the dead connection's task hangs until the job's deadline; no redial, ever."""
    server = ws_server(hang_up)
    with EmulatedTarget(multiplier=1, ws_timeout=0.5) as tgt:
        tgt.bucket("b").put("a", b"aa")
        etl = tgt.attach("ws-etl", server.url, comm="ws")
        result = tgt.ws(etl, "b", "a", fqn=False)
        assert result.error is not None, result
        assert "no ws reply within 0.5 s" in result.error.msg
        assert "closed with the task outstanding" in result.error.msg
        assert "1006" in result.error.msg and "stall until it is aborted" in result.error.msg
        pool = etl.inline_pools[0]
        assert pool.live == 0 and any("1006" in error for error in pool.errors)
        again = tgt.ws(etl, "b", "a", fqn=False)  # the target never reconnects
        assert again.error is not None
        assert "never dials its ws pool again" in again.error.msg
        assert server.wait_for(lambda s: s.connections == 1)


def text_failure(conn: ServerConnection, server: WSServer) -> None:
    """A server that answers every task with text, as servers report failures over ws."""
    while True:
        control = server.recv(conn)
        if b'"fqn"' not in control:
            server.recv(conn)
        conn.send("Transform failed: boom (object: a)")


def test_text_reply_without_pipeline_is_a_silent_loss(
    tgt: EmulatedTarget, ws_server: MakeWS
) -> None:
    """§7.4/D27: no error is recorded (as a target records none), and the loss is reported."""
    server = ws_server(text_failure)
    etl = tgt.attach("ws-etl", server.url, comm="ws")
    result = tgt.ws(etl, "b", "a", fqn=False)
    assert result.ok and not result.delivered and result.content is None
    assert result.failed and result.lost is not None
    assert "in a cluster this object would be stored empty or skipped" in result.lost
    assert "Transform failed: boom" in result.lost
    report = tgt.run_job(etl, "b", "dst", continue_on_error=False)
    assert report.lost == 4 and report.failed == 4 and not report.ok  # no abort: a target
    assert not report.aborted and not tgt.bucket("dst").exists("a")  # sees no error at all
    assert all("stored empty or skipped" in error.msg for error in report.errors)


def test_target_drops_connection_without_close_frame(
    tgt: EmulatedTarget, ws_server: MakeWS
) -> None:
    server = ws_server(upper_handler)
    tgt.attach("ws-etl", server.url, comm="ws")
    tgt.drop_ws("ws-etl")
    assert server.wait_for(lambda s: bool(s.closes)) and server.closes[0].rcvd is None


def test_offline_job_pool(ws_server: MakeWS) -> None:
    server = ws_server(upper_handler)
    with EmulatedTarget(multiplier=2) as tgt:
        src = tgt.bucket("src")
        for i in range(20):
            src.put(f"o{i}", f"obj{i}".encode())
        tgt.attach("ws-etl", server.url, comm="ws")
        report = tgt.run_job("ws-etl", "src", "dst")
        assert report.ok and report.stored == 20
        assert tgt.bucket("dst").get("o7") == b"OBJ7"
        assert server.wait_for(lambda s: s.connections == 2 + 8)  # N x 1 inline, N x 4 job
        assert server.wait_for(lambda s: len(s.closes) == 8)
        assert all(c.rcvd is None for c in server.closes)


def test_ws_needs_direct_put(tgt: EmulatedTarget) -> None:
    with pytest.raises(ValueError, match="WebSocket without direct put"):
        tgt.attach("ws-etl", "http://127.0.0.1:1", comm="ws", direct_put=False)


def test_failed_handshake(tgt: EmulatedTarget, closed_port: int) -> None:
    with pytest.raises(Exception, match="failed to dial"):
        tgt.attach("ws-etl", f"http://127.0.0.1:{closed_port}", comm="ws")
    assert "ws-etl" not in tgt.cluster.etls
