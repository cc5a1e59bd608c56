"""A body of known size collected into one buffer as it arrives."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

from aisetl.sized_body import FIRST_ROOM, SizedBody

LENGTH = 3 * FIRST_ROOM + 12345  # crosses several doublings, ends inside one
DATA = bytes(range(256)) * (LENGTH // 256) + b"x" * (LENGTH % 256)


def test_pieces_added_come_back_as_one_value() -> None:
    body = SizedBody(LENGTH)
    for start in range(0, LENGTH, 65536):
        body.add(DATA[start : start + 65536])
    assert body.size == LENGTH
    assert body.value() == DATA


@pytest.mark.parametrize("announced", [0, 100, LENGTH - 1])
def test_more_than_announced_or_no_length_at_all_is_kept_whole(announced: int) -> None:
    body = SizedBody(announced)
    for start in range(0, LENGTH, 50000):
        body.add(memoryview(DATA)[start : start + 50000])
    assert body.value() == DATA


def test_nothing_is_allocated_for_the_body_before_its_bytes_arrive() -> None:
    """4 MiB zeroed up front took milliseconds: an event loop beginning many bodies in one
    turn answered nothing else meanwhile."""
    body = SizedBody(64 * 1024 * 1024)
    assert sys.getsizeof(body._buffer) < FIRST_ROOM
    body.add(b"abc")
    assert sys.getsizeof(body._buffer) < 2 * FIRST_ROOM
    assert body.value() == b"abc"


def test_a_socket_is_read_straight_into_place() -> None:
    server, client = socket.socketpair()
    with server, client:
        sender = threading.Thread(target=client.sendall, args=(DATA,))
        sender.start()
        body = SizedBody(LENGTH)
        body.add(b"")  # a first piece the protocol had buffered, here empty
        while body.size < LENGTH and body.receive(server, 65536):
            pass
        sender.join(5)
        assert body.value() == DATA


def test_a_peer_that_stops_early_leaves_the_bytes_that_came() -> None:
    server, client = socket.socketpair()
    with server:
        with client:
            client.sendall(DATA[:1000])
        body = SizedBody(LENGTH)
        while body.receive(server, 65536):
            pass
        assert body.size == 1000
        assert body.value() == DATA[:1000]
