"""The metrics tally: counts kept in memory, written exactly (and in order) by a flush."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aisetl import tally as tally_module
from aisetl.metrics import PrometheusObserver
from aisetl.tally import FLUSH_INTERVAL, Tally
from tests.forked import in_forked_child

BUCKETS = (0.001, 0.01, 0.1, 1.0, float("inf"))
SECONDS = [0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 3.0, 0.0]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")  # when each was made, not what it counts
    }


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram, Gauge]:
    counter = Counter("objects", "objects", ["comm"], registry=registry)
    histogram = Histogram("seconds", "seconds", ["comm"], buckets=BUCKETS, registry=registry)
    gauge = Gauge("in_flight", "in flight", registry=registry)
    return counter, histogram, gauge


def test_a_flush_writes_what_direct_calls_would_have() -> None:
    direct_registry, tallied_registry = CollectorRegistry(), CollectorRegistry()
    counter, histogram, gauge = _metrics(direct_registry)
    t_counter, t_histogram, t_gauge = _metrics(tallied_registry)
    tally = Tally(t_gauge)
    counter.labels("ws")  # (they exist, at zero, in both)
    histogram.labels("ws")
    for seconds in SECONDS:
        gauge.inc()
        t_gauge.inc()
        counter.labels("hpush").inc()
        histogram.labels("hpush").observe(seconds)
        gauge.dec()
        tally.finished(
            (t_counter.labels("hpush"), t_counter.labels("ws")),
            (1.0, 0.0),  # a zero amount is skipped
            (t_histogram.labels("hpush"), t_histogram.labels("ws")),
            (seconds, None),  # so is a missing observation
        )
    before = _samples(tallied_registry)
    assert before[("in_flight", ())] == len(SECONDS)  # nobody left before the flush
    assert before[("objects_total", (("comm", "hpush"),))] == 0
    tally.flush()
    assert _samples(tallied_registry) == _samples(direct_registry)


def test_objects_leave_the_gauge_only_after_their_counts_are_written() -> None:
    registry = CollectorRegistry()
    counter, _, gauge = _metrics(registry)
    order: list[str] = []

    class Recording:
        def __init__(self, name: str, real: Any) -> None:
            self.name, self.real = name, real

        def inc(self, amount: float = 1.0) -> None:
            order.append(f"{self.name}.inc")
            self.real.inc(amount)

        def dec(self, amount: float = 1.0) -> None:
            order.append(f"{self.name}.dec")
            self.real.dec(amount)

    tally = Tally(Recording("in_flight", gauge))
    tally.finished((Recording("objects", counter.labels("hpush")),), (1.0,), (), ())
    tally.count(Recording("puts", counter.labels("direct")))
    tally.flush()
    assert order == ["objects.inc", "puts.inc", "in_flight.dec"]


def test_a_sampled_gauge_is_read_at_each_flush_and_the_last_reader_counts() -> None:
    registry = CollectorRegistry()
    _, _, in_flight = _metrics(registry)
    reserved = Gauge("reserved", "bytes", registry=registry)
    tally = Tally(in_flight)
    level = [5.0]
    tally.sample(reserved, lambda: level[0])
    assert _samples(registry)[("reserved", ())] == 0  # read only when written
    tally.flush()
    assert _samples(registry)[("reserved", ())] == 5
    level[0] = 7.0
    tally.flush()
    assert _samples(registry)[("reserved", ())] == 7
    tally.sample(reserved, lambda: 1.0)  # (a newer reader replaces the older one)
    tally.flush()
    assert _samples(registry)[("reserved", ())] == 1


def test_a_histogram_without_the_usual_layout_is_observed_value_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tally_module, "_HISTOGRAM_PARTS", ("_not_there",))
    direct_registry, tallied_registry = CollectorRegistry(), CollectorRegistry()
    _, histogram, _ = _metrics(direct_registry)
    _, t_histogram, t_gauge = _metrics(tallied_registry)
    tally = Tally(t_gauge)
    t_gauge.inc(len(SECONDS))
    for seconds in SECONDS:
        histogram.labels("ws").observe(seconds)
        tally.finished((), (), (t_histogram.labels("ws"),), (seconds,))
    tally.flush()
    assert _samples(tallied_registry) == {
        **_samples(direct_registry),
        ("in_flight", ()): 0.0,
    }


def test_the_ws_tasks_queued_are_read_at_each_flush() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    for delta in (1, 1, 1, -1):
        observer.ws_queued(delta)
    observer.tally.flush()
    assert _samples(registry)[("aisetl_ws_tasks_queued", ())] == 2
    observer.ws_queued(-2)
    observer.tally.flush()
    assert _samples(registry)[("aisetl_ws_tasks_queued", ())] == 0


def test_counts_are_written_by_the_process_s_own_thread() -> None:
    registry = CollectorRegistry()
    counter = Counter("objects", "objects", registry=registry)
    tally = Tally(Gauge("in_flight", "in flight", registry=registry))
    tally.count(counter)
    deadline = time.monotonic() + 50 * FLUSH_INTERVAL
    while _samples(registry)[("objects_total", ())] != 1:
        assert time.monotonic() < deadline, "the flushing thread wrote nothing"
        time.sleep(FLUSH_INTERVAL / 4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_flushes_from_its_own_thread() -> None:
    registry = CollectorRegistry()
    counter = Counter("objects", "objects", registry=registry)
    tally = Tally(Gauge("in_flight", "in flight", registry=registry))
    tally.count(counter)  # the parent's thread runs now
    tally.flush()

    def child_counts_are_written() -> bool:  # a fork copies no thread: the tally starts its own
        tally.count(counter, 2.0)
        deadline = time.monotonic() + 50 * FLUSH_INTERVAL
        while time.monotonic() < deadline:
            if _samples(registry)[("objects_total", ())] == 3:
                return True
            time.sleep(FLUSH_INTERVAL / 4)
        return False

    assert in_forked_child(child_counts_are_written), "the child's counts were never written"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_write_what_its_parent_still_holds() -> None:
    registry = CollectorRegistry()
    counter = Counter("objects", "objects", registry=registry)
    tally = Tally(Gauge("in_flight", "in flight", registry=registry))
    tally.count(counter, 5.0)  # not written yet (unless the parent's thread just did): the parent's

    def child_writes_only_its_own() -> bool:
        at_fork = _samples(registry)[("objects_total", ())]
        tally.count(counter, 2.0)
        tally.flush()
        return _samples(registry)[("objects_total", ())] == at_fork + 2

    assert in_forked_child(child_writes_only_its_own), "the child wrote its parent's counts too"
    tally.flush()
    assert _samples(registry)[("objects_total", ())] == 5
