"""A gunicorn reply's header block goes out with its first body bytes, in gunicorn's order."""

from __future__ import annotations

from typing import Any

from aisetl._gunicorn_replies import HeadHoldingSocket
from aisetl.http11 import JOIN_LIMIT

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


class Recorder:
    """A socket that records what is done with it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def sendall(self, data: bytes) -> None:
        self.calls.append(("sendall", bytes(data)))

    def shutdown(self, how: int) -> None:
        self.calls.append(("shutdown", how))


def test_a_small_body_goes_out_with_the_head_in_one_write() -> None:
    sock = Recorder()
    held = HeadHoldingSocket(sock)  # type: ignore[arg-type]
    held.sendall(HEAD)
    assert sock.calls == []
    held.sendall(b"hello")
    held.sendall(b"more")  # later writes go straight out
    held.flush()
    assert sock.calls == [("sendall", HEAD + b"hello"), ("sendall", b"more")]


def test_a_large_body_is_not_copied_behind_the_head() -> None:
    sock = Recorder()
    held = HeadHoldingSocket(sock)  # type: ignore[arg-type]
    body = b"x" * (JOIN_LIMIT + 1)
    held.sendall(HEAD)
    held.sendall(body)
    assert sock.calls == [("sendall", HEAD), ("sendall", body)]


def test_a_reply_without_body_bytes_sends_its_head_on_flush_once() -> None:
    sock = Recorder()
    held = HeadHoldingSocket(sock)  # type: ignore[arg-type]
    held.sendall(HEAD)
    held.flush()
    held.flush()
    assert sock.calls == [("sendall", HEAD)]


def test_anything_else_done_with_the_socket_comes_after_the_held_head() -> None:
    sock = Recorder()
    held = HeadHoldingSocket(sock)  # type: ignore[arg-type]
    held.sendall(HEAD)
    held.shutdown(1)  # e.g. gunicorn closing a reply that failed mid-way
    assert sock.calls == [("sendall", HEAD), ("shutdown", 1)]
