"""A body of known size collected into one buffer as it arrives."""

from __future__ import annotations

import os
import platform
import socket
import threading
from pathlib import Path

import pytest

from aisetl import sized_body
from aisetl.sized_body import FIRST_ROOM, SizedBody
from aisetl.sources import BodyDoesNotFit

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


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")
def test_no_memory_is_touched_for_a_body_before_its_bytes_arrive() -> None:
    """Zeroing 4 MiB up front took milliseconds: an event loop beginning many bodies in one
    turn answered nothing else meanwhile. Four 64 MiB bodies begun cost no resident memory."""
    before = _resident_bytes()
    bodies = [SizedBody(64 * 1024 * 1024) for _ in range(4)]
    assert _resident_bytes() - before < 16 * 1024 * 1024
    bodies[0].add(b"abc")
    assert bodies[0].value() == b"abc"


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython's C call")
def test_a_large_body_is_written_into_the_bytes_it_becomes() -> None:
    assert sized_body._MAKE_BYTES is not None
    body = SizedBody(LENGTH)
    target = body._data
    for start in range(0, LENGTH, 70000):
        body.add(DATA[start : start + 70000])
    value = body.value()
    assert value is target and value == DATA and hash(value) == hash(DATA)
    assert body._data is None and body._view is None  # nothing can write into it any more


def test_a_body_too_large_for_memory_does_not_fit() -> None:
    with pytest.raises(BodyDoesNotFit):
        SizedBody(2**62)


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
