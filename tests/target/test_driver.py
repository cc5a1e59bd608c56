"""How the emulated target reads ETL answers (TV-14) and retries (TV-15), over real sockets.

Each test plays the ETL server with a scripted raw server.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

from aisetl.target import Cluster, EmulatedTarget
from aisetl.target.wire import retry_sleeps

from .rawserver import RawRequest, RawServer, Script, reset, response

MakeServer = Callable[[Script], RawServer]
SCALE = 0.001


@pytest.fixture(scope="module")
def tgt() -> Iterator[EmulatedTarget]:
    with EmulatedTarget(time_scale=SCALE) as target:
        bucket = target.bucket("b")
        bucket.put("o.txt", b"hello")
        bucket.put("a b.txt", b"spaced")
        for name in ("what?.txt", "a#b", "100%.txt"):
            bucket.put(name, b"odd")
        yield target


_counter = iter(range(10_000))


def attach(tgt: EmulatedTarget, server: RawServer, **options: object) -> str:
    name = f"raw-etl-{next(_counter)}"
    tgt.attach(name, server.url, **options)  # type: ignore[arg-type]
    return name


def always(data: bytes) -> Script:
    return lambda request, conn, n: data


@pytest.mark.parametrize(
    ("answer", "content", "framing"),
    [
        (response(200, b"abc"), b"abc", "length"),
        (response(202, b"abc"), b"abc", "length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n",
            b"abc",
            "chunked",
        ),
        (response(206, b"abc"), b"abc", "length"),
    ],
)
def test_tv14_success(
    tgt: EmulatedTarget, raw_server: MakeServer, answer: bytes, content: bytes, framing: str
) -> None:
    etl = attach(tgt, raw_server(always(answer)))
    result = tgt.hpush(etl, "b", "o.txt")
    assert result.ok and result.content == content and result.framing == framing
    assert result.attempts == 1


def test_tv14_close_delimited_http10(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nHE")
        time.sleep(0.02)
        conn.sendall(b"LLO")

    etl = attach(tgt, raw_server(script))
    for _ in range(2):  # the connection is not reused
        result = tgt.hpush(etl, "b", "o.txt")
        assert result.content == b"HELLO" and result.framing == "close"


def test_tv14_204(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    etl = attach(tgt, raw_server(always(response(204))))
    inline = tgt.hpush(etl, "b", "o.txt")
    assert inline.error is not None and (inline.error.msg, inline.error.ecode) == ("skip", 204)
    offline = tgt.hpush(etl, "b", "o.txt", dst=("dst", "o.txt"))
    assert offline.ok and offline.delivered and offline.content is None


@pytest.mark.parametrize(
    ("status", "body", "msg"),
    [
        (404, b"nope", "object not found"),
        (500, b"boom", "ETL error: boom"),
        (507, b"", "ETL error: "),
    ],
)
def test_tv14_errors(
    tgt: EmulatedTarget, raw_server: MakeServer, status: int, body: bytes, msg: str
) -> None:
    server = raw_server(always(response(status, body)))
    result = tgt.hpush(attach(tgt, server), "b", "o.txt")
    assert result.error is not None
    assert result.error.as_dict() == {"obj_name": "ais://b/o.txt", "msg": msg, "ecode": status}
    assert len(server.requests) == 1


def busy(times: int, header: bool = True) -> Script:
    headers = {"Ais-Etl-Retry-Reason": "direct-put-transient"} if header else {}

    def script(request: RawRequest, conn: socket.socket, n: int) -> bytes:
        if n < times:
            return response(503, b"busy", headers)
        return response(200, request.body.upper())

    return script


def test_tv14_503_contract_replays_body_mode(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(busy(2))
    result = tgt.hpush(attach(tgt, server), "b", "o.txt", fqn=False)
    assert result.ok and result.content == b"HELLO" and result.attempts == 3
    assert [r.body for r in server.requests] == [b"hello"] * 3
    assert result.sleeps == pytest.approx([1 * SCALE, 1.5 * SCALE])


def test_tv14_503_contract_exhausted(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(busy(100))
    result = tgt.hpush(attach(tgt, server), "b", "o.txt", fqn=False)
    assert result.attempts == 11 and len(server.requests) == 11
    assert result.error is not None and result.error.ecode == 503
    assert result.error.msg == "503 Service Unavailable: retriable soft error"


@pytest.mark.parametrize(("fqn", "header"), [(True, True), (False, False)])
def test_tv14_503_not_replayed(
    tgt: EmulatedTarget, raw_server: MakeServer, fqn: bool, header: bool
) -> None:
    server = raw_server(busy(1, header))
    result = tgt.hpush(attach(tgt, server), "b", "o.txt", fqn=fqn)
    assert result.error is not None and result.error.msg == "ETL error: busy"
    assert len(server.requests) == 1


def test_503_contract_not_for_hpull(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(busy(1))
    result = tgt.hpull(attach(tgt, server), "b", "o.txt", fqn=False)
    assert result.error is not None and result.error.ecode == 503
    assert len(server.requests) == 1


def test_tv58_chunked_body_aborted_mid_stream(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nHE\r\n")
        time.sleep(0.02)
        reset(conn)

    server = raw_server(script)
    etl = attach(tgt, server)
    result = tgt.copy(etl, "b", "o.txt", ("dst", "o.txt"))
    assert result.error is not None and "connection reset by peer" in result.error.msg
    assert result.content is None and len(server.requests) == 1
    assert not tgt.bucket("dst").exists("o.txt")


def test_short_content_length_is_a_read_error(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHEL")
        conn.shutdown(socket.SHUT_WR)

    result = tgt.hpush(attach(tgt, raw_server(script)), "b", "o.txt")
    assert result.error is not None and result.error.msg == "unexpected EOF"
    assert result.attempts == 1


def test_truncated_error_body(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> None:
        conn.sendall(b"HTTP/1.1 500 X\r\nContent-Length: 10\r\n\r\nbo")
        conn.shutdown(socket.SHUT_WR)

    result = tgt.hpush(attach(tgt, raw_server(script)), "b", "o.txt")
    assert result.error is not None and result.error.ecode == 500
    assert result.error.msg.startswith("failed to read error message from ETL response")


def test_tv15_connection_refused_schedule(tgt: EmulatedTarget, closed_port: int) -> None:
    name = f"refused-{next(_counter)}"
    tgt.attach(name, f"http://127.0.0.1:{closed_port}")
    result = tgt.hpush(name, "b", "o.txt")
    assert result.attempts == 11
    assert result.sleeps == pytest.approx(retry_sleeps(scale=SCALE))
    assert result.error is not None and result.error.ecode == 0
    assert "connection refused" in result.error.msg
    assert result.error.msg.startswith(f'Put "http://127.0.0.1:{closed_port}/b/o.txt?etl_fqn=')


def test_reset_before_response_is_retried(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> bytes | None:
        if n < 2:
            reset(conn)
            return None
        return response(200, b"ok")

    server = raw_server(script)
    result = tgt.hpull(attach(tgt, server), "b", "o.txt")
    assert result.ok and result.attempts == 3 and len(server.requests) == 3


def test_eof_without_response_is_not_retried(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> None:
        conn.shutdown(socket.SHUT_WR)

    server = raw_server(script)
    result = tgt.hpush(attach(tgt, server), "b", "o.txt")
    assert result.error is not None and result.error.msg.endswith(": EOF")
    assert result.attempts == 1 and len(server.requests) == 1


def test_tv15_timeout_is_fatal(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    def script(request: RawRequest, conn: socket.socket, n: int) -> bytes:
        time.sleep(0.5)
        return response(200, b"late")

    server = raw_server(script)
    started = time.monotonic()
    result = tgt.hpush(attach(tgt, server, obj_timeout=0.2), "b", "o.txt")
    assert time.monotonic() - started < 0.45
    assert result.error is not None and "Client.Timeout exceeded" in result.error.msg
    assert result.attempts == 1


def test_malformed_response_is_not_retried(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(always(b"NOT HTTP AT ALL\r\n\r\n"))
    result = tgt.hpush(attach(tgt, server), "b", "o.txt")
    assert result.error is not None and "malformed HTTP response" in result.error.msg
    assert result.attempts == 1


def test_missing_source_object(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(always(response(200)))
    result = tgt.hpush(attach(tgt, server), "b", "missing.txt")
    assert result.error is not None and result.error.as_dict()["msg"] == "object not found"
    assert server.requests == []


def test_request_heads(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(always(response(200, b"x")))
    etl = attach(tgt, server)
    host = f"127.0.0.1:{server.port}"
    fqn = tgt.bucket("b").fqn("a b.txt")
    tgt.hpush(etl, "b", "a b.txt")
    tgt.hpush(etl, "b", "a b.txt", fqn=False, etl_args="k=v")
    tgt.hpull(etl, "b", "a b.txt", etl_args="k=v", pipeline=[etl])
    push_fqn, push_body, pull = server.requests
    assert push_fqn.head.startswith(b"PUT /b/a%20b.txt?etl_fqn=%252F")
    assert push_fqn.head.endswith(
        f" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    assert (
        push_body.head
        == (
            f"PUT /b/a%20b.txt?etl_args=k%3Dv HTTP/1.1\r\nHost: {host}\r\n"
            "User-Agent: Go-http-client/1.1\r\nContent-Length: 6\r\n\r\n"
        ).encode()
    )
    assert push_body.body == b"spaced"
    escaped = quote(quote(fqn, safe="@"), safe="")
    assert (
        pull.head
        == (
            f"GET /ais%2F@%23%2Fb%2Fa%20b.txt?etl_args=k%3Dv&etl_fqn={escaped}"
            f" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Ais-Node-Url: http://127.0.0.1:{server.port}\r\n\r\n"
        ).encode()
    )
    recorded = tgt.records("driver", where=lambda r: r.uri.startswith("/b/a%20b.txt?etl_args"))
    assert recorded[-1].head == push_body.head and recorded[-1].status == 200


def test_faithful_defects_on_the_wire(tgt: EmulatedTarget, raw_server: MakeServer) -> None:
    server = raw_server(always(response(200, b"")))
    etl = attach(tgt, server)
    question = tgt.hpush(etl, "b", "what?.txt")
    assert question.ok and question.content == b""  # silently wrong (TV-11)
    assert server.requests[0].uri.startswith("/b/what?.txt?etl_fqn=")
    tgt.hpush(etl, "b", "a#b")
    assert server.requests[1].uri == "/b/a"
    percent = tgt.hpush(etl, "b", "100%.txt")
    assert len(server.requests) == 2 and percent.attempts == 0
    assert percent.error is not None and percent.error.msg.endswith('invalid URL escape "%.t"')


def test_sane_mode_escapes_names(raw_server: MakeServer) -> None:
    server = raw_server(always(response(200, b"ok")))
    names = ("what?.txt", "a#b", "100%.txt")
    with EmulatedTarget(faithful=False) as tgt:
        etl = tgt.attach("sane-etl", server.url)
        for name in names:
            tgt.bucket("b").put(name, b"x")
            assert tgt.hpush(etl, "b", name, fqn=False).ok
    assert [r.uri for r in server.requests] == ["/b/what%3F.txt", "/b/a%23b", "/b/100%25.txt"]


def test_remote_destination_hop(raw_server: MakeServer) -> None:
    server = raw_server(always(response(204)))
    with Cluster(targets=2, placement="remote") as cluster:
        t0, t1 = cluster.targets
        t0.bucket("src").put("x y.txt", b"data")
        cluster.bucket("dst")
        cluster.attach("hop-etl", server.url)
        result = t0.transform("hop-etl", "src", "x y.txt", dst=("dst", "new name.txt"), job_id="J1")
        assert result.delivered
        copy = t0.copy("hop-etl", "src", "x y.txt", ("dst", "n.txt"))
        assert copy.delivered
        local = t1.transform("hop-etl", t1.bucket("src"), "x y.txt", dst=("dst", "n.txt"))
        assert local.error is not None  # t1 has no such object
    job_hop, copy_hop = (
        r.head.split(b"Ais-Node-Url: ")[1].split(b"\r\n")[0] for r in server.requests
    )
    assert job_hop == f"{t1.url}/ais%2F@%23%2Fdst%2Fnew%20name.txt?owt=3&uuid=J1".encode()
    assert copy_hop == f"{t1.url}/ais%2F@%23%2Fdst%2Fn.txt".encode()
