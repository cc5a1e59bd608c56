"""HeadWatchdog: a late head gets its 408, heads read in time get nothing, and the watching
thread wakes about once per allowance however many heads come (not once per head)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from aisetl.head_deadline import HeadWatchdog

SECONDS = 0.3


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    client.settimeout(5)
    yield server, client
    server.close()
    client.close()


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_late_head_is_answered_408_and_its_socket_shut(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    watchdog = HeadWatchdog(SECONDS)
    started = time.monotonic()
    watch = watchdog.arm(server)
    answer = read_until_closed(client)
    assert time.monotonic() - started >= SECONDS * 0.9
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"AISETL_HEADER_TIMEOUT" in answer
    assert HeadWatchdog.late(watch) and not watchdog.disarm(watch)
    assert watchdog.expired == 1


def test_heads_read_in_time_get_nothing_and_a_late_one_among_them_is_caught(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    other_server, other_client = socket.socketpair()
    other_client.settimeout(5)
    try:
        watchdog = HeadWatchdog(SECONDS)
        in_time = [watchdog.arm(other_server) for _ in range(3)]
        late = watchdog.arm(server)  # never disarmed
        for _ in range(200):
            assert watchdog.disarm(watchdog.arm(other_server))
        assert all(watchdog.disarm(watch) for watch in in_time)
        assert read_until_closed(client).startswith(b"HTTP/1.1 408 ")
        assert HeadWatchdog.late(late)
        other_client.settimeout(SECONDS)
        with pytest.raises(TimeoutError):
            other_client.recv(1)  # nothing was written to the heads read in time
        assert watchdog.expired == 1
    finally:
        other_server.close()
        other_client.close()


def test_the_thread_wakes_per_allowance_not_per_head(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _ = pair
    watchdog = HeadWatchdog(SECONDS)
    until = time.monotonic() + 4 * SECONDS
    heads = 0
    while time.monotonic() < until and heads < 100_000:  # heads come and go for 4 allowances
        assert watchdog.disarm(watchdog.arm(server))
        heads += 1
        if heads % 100 == 0:
            time.sleep(0.001)
    assert heads > 1000
    assert watchdog.wakeups <= 12, f"{watchdog.wakeups} wake-ups for {heads} heads"


def test_an_idle_watchdog_sleeps_until_the_next_head_and_still_catches_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    watchdog = HeadWatchdog(SECONDS)
    assert watchdog.disarm(watchdog.arm(server))
    time.sleep(3 * SECONDS)  # one allowance with heads, then one without: it sleeps
    resting = watchdog.wakeups
    time.sleep(2 * SECONDS)
    assert watchdog.wakeups == resting
    started = time.monotonic()
    watchdog.arm(server)
    assert read_until_closed(client).startswith(b"HTTP/1.1 408 ")
    assert SECONDS * 0.9 <= time.monotonic() - started < SECONDS + 2.0
