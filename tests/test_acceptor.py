"""The accepting loop of the threaded servers: probes answered there, the rest handed on."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from aisetl.acceptor import Accepted, Acceptor

PROBE = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@contextmanager
def accepting(
    hold_seconds: float = 5.0, answers_probes: Callable[[], bool] | None = None
) -> Iterator[tuple[int, queue.SimpleQueue[Accepted]]]:
    """An acceptor on a port of 127.0.0.1; yields the port and what it hands over."""
    handed: queue.SimpleQueue[Accepted] = queue.SimpleQueue()
    errors: list[OSError] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        acceptor = Acceptor(
            listener, handed.put, errors.append, hold_seconds, answers_probes=answers_probes
        )
        thread = threading.Thread(target=acceptor.run, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], handed
        finally:
            acceptor.stop()
            thread.join(5)
    assert not thread.is_alive()
    assert errors == []


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_probe_is_answered_where_it_is_accepted() -> None:
    with accepting() as (port, handed):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(PROBE)
                assert _answer(client).startswith(b"HTTP/1.1 200 OK\r\n")
        assert handed.empty()


def test_a_probe_sent_after_its_connect_is_answered_by_the_acceptor_too() -> None:
    """Held until its first bytes come, rather than queued for a thread at once."""
    with accepting() as (port, handed):
        with socket.create_connection(("127.0.0.1", port)) as client:
            time.sleep(0.2)  # accepted meanwhile, with nothing to read
            client.sendall(PROBE)
            assert _answer(client).endswith(b"Running")
        assert handed.empty()


def test_any_other_request_is_handed_over_unread() -> None:
    request = b"PUT /b/o HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    with accepting() as (port, handed):
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(request)
            conn, _ = handed.get(timeout=5)
            with conn:
                conn.settimeout(5)
                assert conn.recv(4096) == request
        with socket.create_connection(("127.0.0.1", port)) as client:
            time.sleep(0.2)
            client.sendall(request)  # after the accept: handed over when it comes
            conn, _ = handed.get(timeout=5)
            with conn:
                conn.settimeout(5)
                assert conn.recv(4096) == request


def test_a_silent_connection_is_handed_over_after_the_hold() -> None:
    with (
        accepting(hold_seconds=0.2) as (port, handed),
        socket.create_connection(("127.0.0.1", port)),
    ):
        conn, _ = handed.get(timeout=5)  # nothing came: a thread's keep-alive decides
        conn.close()


def test_a_stop_waits_a_moment_for_held_connections_and_takes_no_new_ones() -> None:
    request = b"PUT /b/o HTTP/1.1\r\nContent-Length: 1\r\n\r\na"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        got: queue.SimpleQueue[Accepted] = queue.SimpleQueue()
        acceptor = Acceptor(listener, got.put, lambda exc: None, hold_seconds=60, stop_linger=1)
        thread = threading.Thread(target=acceptor.run, args=(0.05,), daemon=True)
        thread.start()
        speaker = socket.create_connection(listener.getsockname())
        silent = socket.create_connection(listener.getsockname())
        with speaker, silent:
            time.sleep(0.2)
            assert got.empty()  # both held
            stopping = threading.Thread(target=acceptor.stop)
            stopping.start()
            time.sleep(0.1)
            late = socket.create_connection(listener.getsockname())  # queued, never accepted
            speaker.sendall(request)  # during the stop: still served
            conn, _ = got.get(timeout=5)
            with conn:
                conn.settimeout(5)
                assert conn.recv(4096) == request
            stopping.join(5)
            assert not stopping.is_alive() and not thread.is_alive()
            silent.settimeout(5)
            assert silent.recv(1) == b""  # silent all along: closed at the end of the stop
            assert got.empty()
            late.close()


def test_a_client_gone_before_its_first_bytes_is_handed_over_to_find_out() -> None:
    with accepting() as (port, handed):
        client = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.2)
        client.close()
        conn, _ = handed.get(timeout=5)
        with conn:
            assert conn.recv(1) == b""


@pytest.mark.parametrize("ready", [True, False])
def test_probes_are_answered_only_while_the_owner_says_so(ready: bool) -> None:
    """FastAPI's loop says no once it has stopped turning: its probes are then its own."""
    with (
        accepting(answers_probes=lambda: ready) as (port, handed),
        socket.create_connection(("127.0.0.1", port)) as client,
    ):
        client.sendall(PROBE)
        if ready:
            assert _answer(client).startswith(b"HTTP/1.1 200 OK\r\n")
            assert handed.empty()
        else:
            conn, _ = handed.get(timeout=5)  # unread, for the loop to answer
            with conn:
                conn.settimeout(5)
                assert conn.recv(4096) == PROBE


def test_a_paused_acceptor_leaves_new_connections_waiting_until_it_resumes() -> None:
    """gunicorn pauses accepting while a worker holds its most connections."""
    request = b"PUT /b/o HTTP/1.1\r\nContent-Length: 1\r\n\r\na"
    handed: queue.SimpleQueue[Accepted] = queue.SimpleQueue()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        acceptor = Acceptor(listener, handed.put, lambda exc: None)
        thread = threading.Thread(target=acceptor.run, args=(0.05,), daemon=True)
        thread.start()
        try:
            acceptor.pause(True)
            time.sleep(0.2)  # a poll interval and more: the listener is off
            with socket.create_connection(listener.getsockname()) as client:
                client.sendall(request)
                time.sleep(0.3)
                assert handed.empty()  # waiting in the listen queue, not accepted
                acceptor.pause(False)
                conn, _ = handed.get(timeout=5)
                with conn:
                    conn.settimeout(5)
                    assert conn.recv(4096) == request
        finally:
            acceptor.stop()
            thread.join(5)
