"""Helpers of the operations tests: scrape and parse ``/metrics`` with prometheus_client."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from aisetl.target import ETL

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(etl: ETL | str) -> Samples:
    """Every sample of one ``GET /metrics``, parsed by prometheus_client's own parser."""
    url = etl if isinstance(etl, str) else etl.url()
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def settled(etl: ETL | str, timeout: float = 10.0) -> Samples:
    """A scrape taken once no object is in flight (an object is counted once its answer is
    out, a moment after the client has it)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(etl)
        if value(samples, "aisetl_objects_in_flight") == 0:
            # A scrape reads the workers' counter files, then their gauge files: this one
            # may have read a counter before the last object's count. Every count is written
            # before its object leaves the gauge, so a scrape begun now reads them all.
            return scrape(etl)
        if time.monotonic() > deadline:
            raise AssertionError(f"objects still in flight after {timeout} s")
        time.sleep(0.02)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def objects(samples: Samples) -> dict[tuple[str, str, str], float]:
    """``aisetl_objects_total`` by (comm, outcome, status), zeros left out."""
    found: dict[tuple[str, str, str], float] = {}
    for (name, labels), v in samples.items():
        if name == "aisetl_objects_total" and v:
            d = dict(labels)
            found[(d["comm"], d["outcome"], d["status"])] = v
    return found


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``check`` every 20 ms until it holds (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


def get(url: str, method: str = "GET") -> tuple[int, str]:
    """Status and text of a plain request (an error status is returned, not raised)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
