"""FastAPI over ws with a streaming transform: payloads and replies pass frame by frame."""

from __future__ import annotations

from aisetl.target import EmulatedTarget

from .conftest import Launcher, health_ok, payload


def test_large_object_streams_through_byte_exact(target: EmulatedTarget, launch: Launcher) -> None:
    etl = launch("frames-echo", "tests.transformers:UpperStream", "fastapi")
    bucket = target.bucket("frames")
    data = payload(40 * 1024 * 1024 + 3)
    bucket.put("big.bin", data)
    bucket.put("small.txt", b"after the big one")
    result = target.ws(etl, bucket, "big.bin", fqn=False)
    assert result.error is None, result.error
    assert result.content == data.upper()
    assert target.ws(etl, bucket, "small.txt", fqn=False).content == b"AFTER THE BIG ONE"


def test_unread_payload_is_skipped_before_the_next_task(
    target: EmulatedTarget, launch: Launcher
) -> None:
    etl = launch("frames-head", "tests.servers.ws_servers:HeadOnly", "fastapi")
    bucket = target.bucket("frames")
    first, second = payload(5 * 1024 * 1024, 1), payload(3000, 2)
    bucket.put("first.bin", first)
    bucket.put("second.bin", second)
    for _ in range(3):
        assert target.ws(etl, bucket, "first.bin", fqn=False).content == first[:10]
        assert target.ws(etl, bucket, "second.bin", fqn=False).content == second[:10]


def test_failure_after_the_first_part_breaks_the_connection(
    target: EmulatedTarget, launch: Launcher
) -> None:
    etl = launch("frames-fail", "tests.servers.ws_servers:FailMidway", "fastapi")
    bucket = target.bucket("frames")
    bucket.put("doomed.bin", payload(3 * 1024 * 1024))
    result = target.ws(etl, bucket, "doomed.bin", fqn=False)
    # The target never stores a truncated object: it sees the connection break.
    assert result.error is not None and result.content is None
    assert "1011" in result.error.msg or "connection lost" in result.error.msg
    assert "aborted mid-stream" in etl.logs()
    assert health_ok(etl)
