"""Bad input in every server: the right status, a clear message, nothing lost, /health after.

Each case also checks that an object in flight at the same time is unaffected.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import websockets

from aisetl.target import Bucket, Cluster, TransformResult, free_port

from ..transformers import upper
from .conftest import (
    FRAMEWORKS,
    REPO,
    TEST_ENV,
    health_ok,
    payload,
    raw_exchange,
    serve_argv,
    status_of,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two targets (the second one owns every destination object) and the servers under test."""
    with Cluster(
        tmp_path_factory.mktemp("bad"), targets=2, placement="remote", time_scale=0.001
    ) as c:
        for framework in FRAMEWORKS:
            comm = "ws" if framework == "fastapi" else "hpush"
            for kind, spec in (("buf", "Upper"), ("stream", "UpperStream")):
                c.launch(
                    f"{framework}-{kind}", serve_argv(f"tests.transformers:{spec}", framework),
                    comm=comm, env=TEST_ENV, cwd=str(REPO), init_timeout=60,
                )  # fmt: skip
            c.launch(
                f"{framework}-limited", serve_argv("tests.transformers:UpperStream", framework),
                comm=comm, env={**TEST_ENV, "AISETL_MAX_BODY_SIZE": "1KiB"}, cwd=str(REPO),
                init_timeout=60, per_target=False,
            )  # fmt: skip
        dead = free_port()  # nothing listens there: connections are refused
        c.attach("dead-stage", f"http://127.0.0.1:{dead}")
        yield c


@contextmanager
def in_flight(cluster: Cluster, etl: str) -> Iterator[None]:
    """A slow, valid object sent while the bad input is handled; it must come back intact."""
    target = cluster.targets[0]
    bucket = target.bucket("inflight")
    data = payload(100_000, seed=11)
    name = f"slow-{etl}-{threading.get_ident()}"
    bucket.put(name, data)
    results = []
    worker = threading.Thread(
        target=lambda: results.append(target.hpush(etl, bucket, name, etl_args="sleep=0.5"))
    )
    worker.start()
    try:
        yield
    finally:
        worker.join(30)
    assert results and results[0].error is None, results
    assert results[0].content == upper(data)


def copy_over_hpush(
    cluster: Cluster, etl: str, bucket: Bucket, name: str, dst: tuple[str, str]
) -> TransformResult:
    """Single-object copy with transform, FQN mode, over hpush (FastAPI ETLs default to ws)."""
    source = cluster.targets[0]
    return cluster.run(
        source.core.copy(cluster.etl(etl), bucket, name, dst, comm="hpush", fqn=True)
    )


def body_of(response: bytes) -> str:
    return response.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_malformed_hop_list_is_400(cluster: Cluster, framework: str) -> None:
    etl = cluster.etl(f"{framework}-buf")
    with in_flight(cluster, etl.name):
        for header in (",http://n1:8080/t", "http://a:1,,http://b:2", ",,,"):
            response = raw_exchange(
                etl,
                b"PUT /b/obj HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                + f"Ais-Node-Url: {header}\r\n\r\nhello".encode(),
            )
            assert status_of(response) == 400, response
            assert body_of(response).startswith("Invalid pipeline header"), response
            assert "b/obj" in body_of(response)
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["buf", "stream"])
def test_missing_fqn_file_is_404(cluster: Cluster, framework: str, kind: str) -> None:
    target = cluster.targets[0]
    bucket = target.bucket("gone")
    bucket.put("vanished.bin", b"soon gone")
    os.remove(bucket.fqn("vanished.bin"))
    for comm in ("hpush", "hpull") + (("ws",) if framework == "fastapi" else ()):
        result = target.transform(
            f"{framework}-{kind}", bucket, "vanished.bin", comm=comm, fqn=True
        )
        if (
            comm == "ws"
        ):  # no error channel over ws: the reply is text, which a target counts as done
            assert result.content is None
            continue
        assert result.error is not None and result.error.ecode == 404, result
        assert result.error.msg == "object not found"  # how a target reports any 404 (§10.2)
    assert health_ok(cluster.etl(f"{framework}-{kind}"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("status", [404, 500])
def test_hpull_upstream_status_is_passed_on(cluster: Cluster, framework: str, status: int) -> None:
    target = cluster.targets[0]
    bucket = target.bucket("upstream")
    bucket.put(f"o{status}", b"data")
    target.faults.respond(status, "upstream says no", method="GET", path=f"o{status}")
    etl = f"{framework}-buf"
    with in_flight(cluster, etl):
        result = target.hpull(etl, bucket, f"o{status}", fqn=False)
    assert result.error is not None and result.error.ecode == status, result
    if status != 404:
        assert "upstream says no" in result.error.msg and f"o{status}" in result.error.msg
    assert health_ok(cluster.etl(etl))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["buf", "stream"])
def test_transform_errors_choose_the_status(cluster: Cluster, framework: str, kind: str) -> None:
    target = cluster.targets[0]
    bucket = target.bucket("raising")
    bucket.put("r.txt", b"abc")
    etl = f"{framework}-{kind}"
    with in_flight(cluster, etl):
        for comm in ("hpush", "hpull"):
            failed = target.transform(etl, bucket, "r.txt", comm=comm, etl_args="fail")
            assert failed.error is not None and failed.error.ecode == 500, failed
            assert "ValueError: asked to fail" in failed.error.msg
            assert "raising/r.txt" in failed.error.msg
            rejected = target.transform(etl, bucket, "r.txt", comm=comm, etl_args="reject")
            assert rejected.error is not None and rejected.error.ecode == 415, rejected
            assert "unsupported input: asked to reject" in rejected.error.msg
    assert health_ok(cluster.etl(etl))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_mid_stream_failure_is_never_a_complete_object(cluster: Cluster, framework: str) -> None:
    """TV-58: after the first chunk, a failure breaks the framing; the target stores nothing."""
    target = cluster.targets[0]
    bucket = target.bucket("midstream")
    bucket.put("big.bin", payload(1024 * 1024, seed=2))
    etl = f"{framework}-stream"
    with in_flight(cluster, etl):
        result = target.hpush(etl, bucket, "big.bin", etl_args="fail-mid")
    assert result.error is not None and result.content is None, result
    assert health_ok(cluster.etl(etl))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["buf", "stream"])
@pytest.mark.parametrize("fqn", [False, True], ids=["body", "fqn"])
def test_refusing_hop(cluster: Cluster, framework: str, kind: str, fqn: bool) -> None:
    """Retries, then 502; a one-shot body (streaming, body mode) asks the target to resend."""
    target = cluster.targets[0]
    bucket = target.bucket("refused")
    bucket.put("x", b"payload")
    etl = f"{framework}-{kind}"
    with in_flight(cluster, etl):
        result = target.hpush(etl, bucket, "x", fqn=fqn, pipeline=["dead-stage"])
    assert result.error is not None, result
    if kind == "stream" and not fqn:
        assert result.error.ecode == 503 and result.attempts == 11  # replayed by the target
    else:
        assert result.error.ecode == 502 and result.attempts == 1
        assert "Direct put to http://127.0.0.1:" in result.error.msg
        assert "after 4 attempt(s)" in result.error.msg
    assert health_ok(cluster.etl(etl))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["buf", "stream"])
def test_resetting_hop_is_retried_then_delivered(
    cluster: Cluster, framework: str, kind: str
) -> None:
    source, destination = cluster.targets
    bucket = source.bucket("reset-src")
    data = payload(50_000, seed=4)
    bucket.put("r.bin", data)
    destination.bucket("reset-dst")
    destination.faults.reset(2, method="PUT", path="reset-dst")
    result = copy_over_hpush(
        cluster, f"{framework}-{kind}", bucket, "r.bin", ("reset-dst", "r.bin")
    )
    assert result.error is None and result.delivered, result
    assert destination.bucket("reset-dst").get("r.bin") == upper(data)
    assert health_ok(cluster.etl(f"{framework}-{kind}"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hop_error_status_and_body_are_passed_back(cluster: Cluster, framework: str) -> None:
    source, destination = cluster.targets
    bucket = source.bucket("h500-src")
    bucket.put("o", b"abc")
    destination.bucket("h500-dst")
    destination.faults.respond(
        507, "out of space on the destination", method="PUT", path="h500-dst"
    )
    result = copy_over_hpush(cluster, f"{framework}-buf", bucket, "o", ("h500-dst", "o"))
    assert result.error is not None and result.error.ecode == 507, result
    assert "out of space on the destination" in result.error.msg
    assert not destination.bucket("h500-dst").exists("o")
    assert health_ok(cluster.etl(f"{framework}-buf"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_invalid_content_length_is_400(cluster: Cluster, framework: str) -> None:
    etl = cluster.etl(f"{framework}-buf")
    with in_flight(cluster, etl.name):
        for value in (b"abc", b"-5", b"1x"):
            response = raw_exchange(
                etl, b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n"
            )
            assert status_of(response) == 400, response
            assert b"content-type: text/plain" in response.lower(), response
            assert "content-length" in body_of(response).lower(), response
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_broken_chunk_framing_is_400_and_closes_the_connection(
    cluster: Cluster, framework: str
) -> None:
    """The rest of the connection cannot be trusted: one plain-text 400, then it is closed."""
    etl = cluster.etl(f"{framework}-buf")
    with in_flight(cluster, etl.name):
        response = raw_exchange(
            etl,
            b"PUT /b/o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nab\r\n0\r\n\r\n"
            b"PUT /b/next HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
            read_timeout=5,
        )
    assert status_of(response) == 400, response
    status_lines = re.findall(rb"HTTP/1\.1 \d{3} ", response)
    assert len(status_lines) == 1, response  # nothing answered for the bytes after it
    assert b"connection: close" in response.lower(), response
    assert "chunk" in body_of(response).lower() and "<html" not in body_of(response).lower()
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unsupported_method_is_405(cluster: Cluster, framework: str) -> None:
    etl = cluster.etl(f"{framework}-buf")
    for method in (b"DELETE", b"POST", b"PATCH"):
        response = raw_exchange(
            etl, method + b" /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        assert status_of(response) == 405, response
        assert "not supported" in body_of(response) and "b/o" in body_of(response)
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["buf", "stream"])
def test_client_that_disconnects_mid_body(cluster: Cluster, framework: str, kind: str) -> None:
    """No server invents an answer for a client that is gone; each logs it the same way."""
    etl = cluster.etl(f"{framework}-{kind}")
    with in_flight(cluster, etl.name):
        for _ in range(3):
            with socket.create_connection(
                (etl.server().host, etl.server().port), timeout=5
            ) as sock:
                sock.sendall(
                    b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10
                )
    assert health_ok(etl)
    target = cluster.targets[0]
    target.bucket("after").put("ok", b"still fine")
    assert target.hpush(etl, "after", "ok").content == b"STILL FINE"
    logs = etl.logs()
    assert "client went away" in logs and "Incomplete request body" not in logs


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_body_over_the_size_limit_is_413(cluster: Cluster, framework: str) -> None:
    etl = cluster.etl(f"{framework}-limited")
    target = cluster.targets[0]
    bucket = target.bucket("limit")
    bucket.put("small", b"a" * 1000)
    bucket.put("large", b"a" * 5000)
    assert target.hpush(etl, bucket, "small", fqn=False).content == b"A" * 1000
    too_big = target.hpush(etl, bucket, "large", fqn=False)
    assert too_big.error is not None and too_big.error.ecode == 413, too_big
    assert "1024-byte limit" in too_big.error.msg
    chunked = raw_exchange(
        etl,
        b"PUT /b/o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n",
    )  # fmt: skip
    assert status_of(chunked) == 413, chunked
    assert target.hpush(etl, bucket, "large", fqn=True).content == b"A" * 5000  # FQN: no body
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_body_larger_than_memory_is_413_at_once(cluster: Cluster, framework: str) -> None:
    """A buffered transform cannot hold 1 PB: a clear 413 before any byte is read, no crash."""
    etl = cluster.etl(f"{framework}-buf")
    with in_flight(cluster, etl.name):
        response = raw_exchange(
            etl,
            b"PUT /b/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n"
            + b"a" * 70_000,
        )
    assert status_of(response) == 413, response
    assert "cannot be held in this server's memory" in body_of(response)
    assert "transform_stream" in body_of(response) and "b/huge" in body_of(response)
    assert health_ok(etl)
    target = cluster.targets[0]
    target.bucket("after-huge").put("ok", b"still fine")
    assert target.hpush(etl, "after-huge", "ok").content == b"STILL FINE"


@pytest.mark.parametrize(
    "payload_follows", [True, False], ids=["then-its-payload", "then-the-next-task"]
)
def test_ws_control_message_that_is_not_json(cluster: Cluster, payload_follows: bool) -> None:
    """The bad task is answered once; the tasks after it get their own answers, in order."""
    etl = cluster.etl("fastapi-buf")

    async def exchange() -> list[str | bytes]:
        async with websockets.connect(
            f"ws://{etl.server().host}:{etl.server().port}/ws", max_size=None, compression=None
        ) as ws:
            await ws.send(b"this is not json")
            if payload_follows:  # as the target sends it when the task has no FQN
                await ws.send(b"the payload of the bad task")
            for name, data in (("after", b"hello"), ("later", b"again")):
                await ws.send(json.dumps({"path": name}).encode())
                await ws.send(data)
            return [await asyncio.wait_for(ws.recv(), 10) for _ in range(3)]

    first, second, third = asyncio.run(exchange())
    assert isinstance(first, str) and first.startswith("Invalid WebSocket control message")
    assert (second, third) == (b"HELLO", b"AGAIN")  # the connection stays usable
    assert health_ok(etl)


def test_wrong_ws_path_is_refused(cluster: Cluster) -> None:
    etl = cluster.etl("fastapi-buf")

    async def connect() -> None:
        async with websockets.connect(f"ws://{etl.server().host}:{etl.server().port}/other"):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatus):
        asyncio.run(connect())
    assert health_ok(etl)
