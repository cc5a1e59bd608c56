"""Requests that arrive whole in one read: on FastAPI a quick transform, a probe or a refusal
that is alone in its read is answered from that read, before uvicorn parses it (no scope, no
cycle, no task); a request that must wait, or a read that holds more than one request, goes to
uvicorn. On the wire nothing may tell the two apart: answers in order, keep-alive kept or
ended as the request asked, and a request that waits is not cut off by the idle timer a quick
one before it armed. Checked beside the other servers, which must answer the same."""

from __future__ import annotations

import socket
import time

import pytest

from aisetl.target import ETL, EmulatedTarget
from aisetl.target.wire import hpull_request_uri, target_uname

from ..transformers import upper
from .conftest import FRAMEWORKS, Launcher, health_ok, payload

pytestmark = pytest.mark.parametrize("framework", FRAMEWORKS)

#: Enough quick calls for the FastAPI server to run the transform on its loop (the policy's
#: streak is 32), so the answers below come from the read and not from a task.
WARM_UP = 40


@pytest.fixture
def etl(launch: Launcher, framework: str) -> ETL:
    etl = launch(
        f"whole-requests-{framework}",
        "tests.transformers:Upper",
        framework,
        env={"AISETL_KEEPALIVE_TIMEOUT": "1"},
        comm="hpush",
    )
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        for i in range(WARM_UP):
            sock.sendall(_put(f"warm/o{i}", b"warm"))
            assert _read_replies(sock, 1)[0][0] == b"HTTP/1.1 200 OK"
    return etl


def _put(path: str, body: bytes, close: bool = False) -> bytes:
    head = f"PUT /{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def _get(uri: str) -> bytes:
    return f"GET {uri} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def _read_replies(sock: socket.socket, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Read ``count`` responses framed by Content-Length: (status line, headers, body)."""
    data = b""
    found: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    while len(found) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            line, *fields = head.split(b"\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (f.partition(b":") for f in fields)
            }
            size = int(headers[b"content-length"])
            if len(rest) >= size:
                found.append((line, headers, rest[:size]))
                data = rest[size:]
                continue
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise AssertionError(f"connection closed after {len(found)} of {count} replies")
        data += chunk
    return found


def _exchange(etl: ETL, wire: bytes, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        sock.sendall(wire)
        return _read_replies(sock, count)


def test_a_mix_in_one_write_is_answered_in_order(
    etl: ETL, target: EmulatedTarget, framework: str
) -> None:
    """Quick objects, a probe, an hpull GET (which waits for the target) and a refusal: six
    answers, in the order asked, each its own."""
    stored = payload(700, seed=3)
    target.bucket("whole").put(f"pulled-{framework}", stored)
    first, second, last = (payload(100 + i, seed=i) for i in range(3))
    wire = b"".join(
        (
            _put("whole/first", first),
            _get("/health"),
            _put("whole/second", second),
            _get(hpull_request_uri(target_uname("whole", f"pulled-{framework}"))),
            _put("whole/last", last),
            b"DELETE /whole/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
    )
    replies = _exchange(etl, wire, 6)
    statuses = [line.split(b" ")[1] for line, _, _ in replies]
    assert statuses == [b"200"] * 5 + [b"405"], replies
    bodies = [body for _, _, body in replies]
    assert bodies[:5] == [upper(first), b"Running", upper(second), upper(stored), upper(last)]
    assert b"DELETE" in bodies[5]
    assert health_ok(etl)


@pytest.mark.parametrize("together", [True, False], ids=["one write", "two writes"])
def test_a_waiting_request_after_a_quick_one_outlives_the_idle_timeout(
    etl: ETL, target: EmulatedTarget, framework: str, together: bool
) -> None:
    """The quick answer leaves the connection idle for a moment (uvicorn arms its 1 s idle
    timer then); the hpull GET right behind it (in the same write, or in the next one once
    the answer is in) waits 1.6 s for the target and must still be answered on the same
    connection."""
    stored = payload(300, seed=5)
    name = f"slow-{framework}-{together}"
    target.bucket("whole").put(name, stored)
    quick = payload(200, seed=6)
    pull = _get(hpull_request_uri(target_uname("whole", name)))
    target.faults.delay(1.6, method="GET")
    try:
        with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
            if together:
                started = time.monotonic()
                sock.sendall(_put("whole/quick", quick) + pull)
                replies = _read_replies(sock, 2)
            else:
                sock.sendall(_put("whole/quick", quick))
                replies = _read_replies(sock, 1)
                started = time.monotonic()
                sock.sendall(pull)
                replies += _read_replies(sock, 1)
    finally:
        target.faults.clear()
    assert [body for _, _, body in replies] == [upper(quick), upper(stored)]
    assert time.monotonic() - started >= 1.5  # (the delay did hold the GET)
    assert health_ok(etl)


def test_a_body_that_comes_in_a_later_read_is_served_as_usual(etl: ETL) -> None:
    """Head and body apart, then a body cut in two: each is read whole and answered."""
    body = payload(5000, seed=8)
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = _put("whole/apart", body)
        head_end = wire.index(b"\r\n\r\n") + 4
        sock.sendall(wire[:head_end])
        time.sleep(0.2)
        sock.sendall(wire[head_end:])
        assert _read_replies(sock, 1)[0][2] == upper(body)
        sock.sendall(wire[: head_end + 1000])
        time.sleep(0.2)
        sock.sendall(wire[head_end + 1000 :])
        assert _read_replies(sock, 1)[0][2] == upper(body)
    assert health_ok(etl)


def _until_closed(etl: ETL, wire: bytes) -> bytes:
    """Send ``wire`` on a new connection and read until the server closes it."""
    with socket.create_connection((etl.server().host, etl.server().port), timeout=10) as sock:
        sock.sendall(wire)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    return data


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(_put("whole/close", b"closing", close=True), id="Connection: close"),
        pytest.param(
            b"PUT /whole/old HTTP/1.0\r\nHost: x\r\nContent-Length: 7\r\n\r\nclosing",
            id="HTTP/1.0",
        ),
    ],
)
def test_a_request_that_asks_to_close_gets_its_answer_then_the_close(etl: ETL, wire: bytes) -> None:
    """The answer, whole, saying ``Connection: close``; then the server closes the connection
    (the read ends; the idle timer would end it too, but the answer would not say so)."""
    data = _until_closed(etl, wire)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", data
    assert b"\r\nconnection: close" in head.lower(), data
    assert body == upper(b"closing")
    assert health_ok(etl)


def test_a_head_probe_gets_a_head_and_no_body(etl: ETL) -> None:
    """``HEAD /health``: the probe's status and headers; no body bytes follow them."""
    data = _until_closed(etl, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", data
    assert sep and rest == b"", data
    assert health_ok(etl)
