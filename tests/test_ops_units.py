"""Table tests of the pure operations pieces: settings, the memory bound, deadlines, log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time

import pytest

from aisetl.config import ConfigError, Settings
from aisetl.deadline import Bounds, Deadline, DeadlineExceeded
from aisetl.edge import is_metrics_request
from aisetl.inflight import InflightBytes
from aisetl.logs import JsonFormatter, Redactor, TextFormatter, target_secret
from aisetl.metrics import NULL
from aisetl.sources import ClientGone
from aisetl.watch import Watcher, in_flight

URL = "http://10.0.0.1:8080/v1/etl/_object/md5-etl/AbCdEfGhIj"


def settings(**env: str) -> Settings:
    return Settings.from_env({"AIS_TARGET_URL": URL, **env})


def test_operations_settings() -> None:
    s = settings()
    assert (s.metrics, s.log_format, s.access_log, s.obj_timeout) == (True, "text", False, 0.0)
    assert s.max_inflight_bytes is None  # derived from the memory limit
    s = settings(
        AISETL_METRICS="off",
        AISETL_LOG_FORMAT="JSON",
        AISETL_ACCESS_LOG="yes",
        AISETL_OBJ_TIMEOUT="2.5",
        AISETL_MAX_INFLIGHT_BYTES="1GiB",
    )
    assert (s.metrics, s.log_format, s.access_log, s.obj_timeout) == (False, "json", True, 2.5)
    assert s.max_inflight_bytes == 1024**3
    assert settings(AISETL_MAX_INFLIGHT_BYTES="0").max_inflight_bytes == 0  # no bound


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AISETL_OBJ_TIMEOUT", "-1", "must be at least 0"),
        ("AISETL_METRICS", "sometimes", "is not a boolean"),
        ("AISETL_LOG_FORMAT", "yaml", r"use 'text' \(the default\) or 'json'"),
        ("AISETL_MAX_INFLIGHT_BYTES", "1 potato", "is not a size"),
    ],
)
def test_operations_settings_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**{name: value})


@pytest.mark.parametrize(
    ("method", "path", "scrape"),
    [
        ("GET", "/metrics", True),
        ("HEAD", "/metrics", True),
        ("PUT", "/metrics", False),  # an object named metrics (a pipeline stage gets these)
        ("GET", "/metrics/x", False),
        ("GET", "/bucket/metrics", False),
        ("GET", "/Metrics", False),
    ],
)
def test_which_requests_are_scrapes(method: str, path: str, scrape: bool) -> None:
    assert is_metrics_request(method, path) is scrape


def test_bytes_fit_then_wait_in_order() -> None:
    bound = InflightBytes(100, NULL)
    assert bound.acquire(60, 0)
    assert not bound.acquire(50, 0)  # over the bound: waits (here: not at all)
    assert bound.reserved == 60 and bound.waiting == 0
    order: list[int] = []

    def wait_for(size: int) -> None:
        assert bound.acquire(size, 10)
        order.append(size)

    big = threading.Thread(target=wait_for, args=(90,))
    big.start()
    while bound.waiting < 1:
        time.sleep(0.001)
    small = threading.Thread(target=wait_for, args=(20,))  # fits now, but comes second
    small.start()
    while bound.waiting < 2:
        time.sleep(0.001)
    bound.release(60)
    big.join(5)
    assert order == [90]  # the first waiter first; the small one still waits behind it
    bound.release(90)
    small.join(5)
    assert order == [90, 20] and bound.reserved == 20


def test_one_object_larger_than_the_bound_is_let_in_alone() -> None:
    bound = InflightBytes(100, NULL)
    assert bound.acquire(500, 0)
    assert not bound.acquire(1, 0)
    bound.release(500)
    assert bound.acquire(1, 0) and bound.reserved == 1


def test_a_reservation_without_a_wait_takes_only_what_fits_and_never_jumps_the_queue() -> None:
    bound = InflightBytes(100, NULL)
    assert bound.try_acquire(60) and bound.reserved == 60
    assert not bound.try_acquire(50) and bound.reserved == 60 and bound.waiting == 0
    waiter = threading.Thread(target=bound.acquire, args=(90, 10))
    waiter.start()
    while bound.waiting < 1:
        time.sleep(0.001)
    assert not bound.try_acquire(10)  # it would fit, but a waiter came first
    bound.release(60)
    waiter.join(5)
    assert bound.reserved == 90


def test_a_watch_that_needs_a_wait_for_memory_is_not_opened() -> None:
    watcher = Watcher(settings(AISETL_MAX_INFLIGHT_BYTES="1000"), logging.getLogger("test"))
    first = watcher.watch_reserved("hpush", "b/one", 300)  # 300 bytes and room for a result
    assert first is not None and watcher.memory.reserved > 300
    opened = in_flight()
    assert watcher.watch_reserved("hpush", "b/two", 300) is None
    assert in_flight() == opened and watcher.memory.waiting == 0
    first.finish()
    assert watcher.memory.reserved == 0
    second = watcher.watch_reserved("hpush", "b/two", 300)
    assert second is not None and in_flight() == opened
    second.finish()


def test_no_bound_only_counts() -> None:
    bound = InflightBytes(0, NULL)
    assert bound.acquire(10**12, 0) and bound.acquire(10**12, 0)
    assert bound.reserved == 2 * 10**12


def test_async_waiters_wake_when_a_thread_releases() -> None:
    bound = InflightBytes(100, NULL)
    assert bound.acquire(100, 0)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: threading.Thread(target=bound.release, args=(100,)).start())
        granted = await bound.acquire_async(80, 5)
        timed_out = await bound.acquire_async(80, 0.05)
        return granted, timed_out

    assert asyncio.run(scenario()) == (True, False)
    assert bound.reserved == 80 and bound.waiting == 0


def test_a_cancelled_async_waiter_gives_back_what_it_got() -> None:
    bound = InflightBytes(100, NULL)
    assert bound.acquire(100, 0)

    async def scenario() -> None:
        waiter = asyncio.ensure_future(bound.acquire_async(50, 5))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())
    bound.release(100)
    assert bound.reserved == 0 and bound.waiting == 0


def test_a_blocking_call_is_given_up_at_its_deadline() -> None:
    import concurrent.futures

    abandoned: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        bounds = Bounds(Deadline(0.1, time.monotonic()), None)
        assert bounds.call(pool, lambda f, why: None, "x", lambda: 7) == 7
        with pytest.raises(DeadlineExceeded, match=r"Deadline of 0\.1 s .* while sleeping"):
            bounds.call(pool, lambda f, why: abandoned.append(why), "sleeping", time.sleep, 1)
        assert len(abandoned) == 1
        gone = Bounds(Deadline(60, time.monotonic()), lambda: True)
        with pytest.raises(ClientGone, match="hung up"):
            gone.call(pool, lambda f, why: None, "sleeping", time.sleep, 1)


def test_an_async_transform_is_cancelled_at_its_deadline() -> None:
    cancelled = []

    async def transform() -> bytes:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return b""

    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded):
            await Bounds(Deadline(0.05, time.monotonic()), None).bound(transform())

    asyncio.run(scenario())
    assert cancelled == [True]


def test_the_secret_is_found_and_hidden() -> None:
    assert target_secret(URL) == "AbCdEfGhIj"
    assert target_secret("http://10.0.0.1:8080") is None
    redact = Redactor(target_secret(URL))
    text = redact(f"GET {URL}/ais%2Fb%2Fo failed; the secret AbCdEfGhIj again")
    hidden = "http://10.0.0.1:8080/v1/etl/_object/md5-etl/***"
    assert text == f"GET {hidden}/ais%2Fb%2Fo failed; the secret *** again"
    # another ETL's secret in a URL of the same shape, too
    assert redact("see http://t/v1/etl/_object/other/zzzzzzzz failed") == (
        "see http://t/v1/etl/_object/other/*** failed"
    )


def test_an_error_message_keeps_its_words_around_a_hidden_secret() -> None:
    from aisetl.outbound import describe_error, redact_url

    assert redact_url("http://t:1/v1/etl/_object/n/zzzzzzzz/b/o?x=1") == (
        "http://t:1/v1/etl/_object/n/***/b/o?x=1"
    )
    error = ConnectionRefusedError("PUT http://t/v1/etl/_object/n/zzzzzzzz failed: refused")
    assert describe_error(error) == (
        "ConnectionRefusedError: PUT http://t/v1/etl/_object/n/*** failed: refused"
    )


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("etl", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_a_json_line_per_record_with_the_object_fields() -> None:
    formatter = JsonFormatter(Redactor("AbCdEfGhIj"))
    line = formatter.format(
        record(f"hpush b/o failed at {URL}", object="b/o", comm="hpush", status=415, duration=0.5)
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "etl"
    assert (entry["object"], entry["comm"], entry["status"], entry["duration"]) == (
        "b/o", "hpush", 415, 0.5,
    )  # fmt: skip
    assert "AbCdEfGhIj" not in line and "pid" in entry and entry["time"].endswith("+00:00")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failed = record("x")
        failed.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(failed))
    assert "ValueError: boom" in entry["exception"]
    assert "AbCdEfGhIj" not in TextFormatter(Redactor("AbCdEfGhIj")).format(record(URL))
