"""Prometheus metrics: what a server counts, and its ``GET /metrics`` answer.

Code that makes a decision tells the process's :class:`Observer` (an object's end in
:mod:`aisetl.watch`, a direct-put attempt in :mod:`aisetl.direct_put`, a ws failure the target
cannot see in :mod:`aisetl.ws_protocol`); nothing else counts. With ``AISETL_METRICS=false``
the observer does nothing and ``/metrics`` answers 404.

Worker processes of one pod (``--workers N``, gunicorn's workers) share one folder of
memory-mapped files, prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): the
process that forks them creates it (:func:`shared_folder`) and marks each dead worker, so one
scrape, whichever worker answers it, gives the pod's totals. Process metrics (CPU, memory,
open files) then come per process, labelled ``pid``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.metrics_core import Metric

from aisetl.config import Settings
from aisetl.reply import TEXT_PLAIN, Reply
from aisetl.tally import Tally

#: The variable prometheus_client reads to count across processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Prometheus's text format (what every Prometheus release reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: from a quick transform of a small object to a large object's slow one.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"),
)  # fmt: skip
_SUPERVISOR_FILE = "supervisor.pid"
_READ_ATTEMPTS = 5
_WORKER_PREFIX = "worker_"

# Outcomes of an object (the ``outcome`` label of ``aisetl_objects_total``).
OK = "ok"  # answered with its content
DELIVERED = "delivered"  # delivered to the next hop by direct put
FAILED = "failed"  # answered with an error status
TIMEOUT = "timeout"  # its deadline (AISETL_OBJ_TIMEOUT) passed
GONE = "gone"  # the target hung up before the answer

# Direct-put events (``aisetl_direct_put_*_total``) and hop kinds (the ``hop`` label).
ATTEMPT = "attempt"
RETRY = "retry"
FAILURE = "failure"
HOP_TARGET = "target"
HOP_ETL = "etl"


class Observer:
    """What the server tells its metrics; this one ignores it (``AISETL_METRICS=false``)."""

    enabled = False

    def object_started(self) -> None:
        """An object was admitted."""

    def object_finished(
        self,
        comm: str,
        outcome: str,
        status: int,
        seconds: float,
        transform_seconds: float | None,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        """An object's answer is out (or will never be): one count, by how it ended."""

    def refused(self, comm: str, status: int) -> None:
        """A request refused at the edge (wrong method, too large, a mangled name)."""

    def direct_put(self, hop: str, event: str) -> None:
        """A direct-put ``attempt``, ``retry`` or final ``failure``, to a ``target`` or ``etl``."""

    def ws_connection(self, delta: int) -> None:
        """A ws connection opened (+1) or closed (-1)."""

    def ws_queued(self, delta: int) -> None:
        """A ws task read (+1) or answered (-1)."""

    def unreported_failure(self, comm: str) -> None:
        """A failure the target cannot see (a ws text reply)."""

    def overrun(self) -> None:
        """A synchronous transform kept running after its object was given up."""

    def memory_limit(self, limit: int) -> None:
        """The bound on bytes reserved for buffered objects (0: none)."""

    def memory(self, reserved: Callable[[], int]) -> None:
        """How to read the bytes reserved for buffered objects now (read when counts are
        written)."""

    def memory_waiting(self, delta: int, seconds: float = 0.0) -> None:
        """A body started (+1) or stopped (-1, after ``seconds``) waiting for memory."""


class PrometheusObserver(Observer):
    """Counts into prometheus_client metrics (on its default registry)."""

    enabled = True

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        self.objects = Counter(
            "aisetl_objects",
            "Objects handled, by communication type, outcome and HTTP status (counted once "
            "the answer is out).",
            ["comm", "outcome", "status"],
            registry=r,
        )
        self.bytes_in = Counter(
            "aisetl_input_bytes", "Object bytes the transforms received.", ["comm"], registry=r
        )
        self.bytes_out = Counter(
            "aisetl_output_bytes", "Result bytes the transforms produced.", ["comm"], registry=r
        )
        self.request_seconds = Histogram(
            "aisetl_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte.",
            ["comm"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.transform_seconds = Histogram(
            "aisetl_transform_duration_seconds",
            "Time spent in the user's transform per object.",
            ["comm"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "aisetl_objects_in_flight",
            "Objects admitted and not answered yet.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.puts = {
            ATTEMPT: Counter(
                "aisetl_direct_put_attempts",
                "Direct-put requests sent, by hop kind (target or etl).",
                ["hop"],
                registry=r,
            ),
            RETRY: Counter(
                "aisetl_direct_put_retries",
                "Direct puts retried after a transient failure, by hop kind.",
                ["hop"],
                registry=r,
            ),
            FAILURE: Counter(
                "aisetl_direct_put_failures",
                "Direct puts that failed for good, by hop kind.",
                ["hop"],
                registry=r,
            ),
        }
        self.ws_connections = Gauge(
            "aisetl_ws_connections_open",
            "WebSocket connections open.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ws_tasks = Gauge(
            "aisetl_ws_tasks_queued",
            "WebSocket tasks read and not answered yet.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.unreported = Counter(
            "aisetl_unreported_failures",
            "Failed objects whose failure the target cannot see (a ws text reply, which it "
            "takes for success).",
            ["comm"],
            registry=r,
        )
        self.overruns = Counter(
            "aisetl_transform_overruns",
            "Synchronous transforms still running when their object was given up (deadline or "
            "client gone); their results are dropped.",
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "aisetl_inflight_bytes",
            "Bytes reserved for buffered objects in flight (bodies and results).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight_limit = Gauge(
            "aisetl_inflight_bytes_limit",
            "Bound on the bytes of buffered objects in flight (AISETL_MAX_INFLIGHT_BYTES; "
            "0: none).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            "aisetl_memory_waiting",
            "Bodies waiting for memory before being read.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.waits = Counter(
            "aisetl_memory_waits", "Bodies that waited for memory before being read.", registry=r
        )
        self.wait_seconds = Counter(
            "aisetl_memory_wait_seconds", "Time bodies spent waiting for memory.", registry=r
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._finished_children: dict[tuple[str, str, int], Any] = {}
        self.tally = Tally(self.in_flight)
        self._ws_tasks_queued = 0  # changed on the event loop only, read at each flush
        self.tally.sample(self.ws_tasks, lambda: self._ws_tasks_queued)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def object_started(self) -> None:
        self.in_flight.inc()  # at once: a scrape finding none in flight must have every count

    def object_finished(
        self,
        comm: str,
        outcome: str,
        status: int,
        seconds: float,
        transform_seconds: float | None,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        key = (comm, outcome, status)
        children = self._finished_children.get(key)
        if children is None:
            children = self._finished_children[key] = self._children_of(comm, outcome, status)
        counters, histograms = children
        # Written in batches; the object leaves the in-flight gauge after its counts.
        self.tally.finished(
            counters, (1.0, bytes_in, bytes_out), histograms, (seconds, transform_seconds)
        )

    def _children_of(
        self, comm: str, outcome: str, status: int
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The labelled counters and histograms an object's end adds to."""
        counters = (
            self._child(self.objects, comm, outcome, str(status) if status else "none"),
            self._child(self.bytes_in, comm),
            self._child(self.bytes_out, comm),
        )
        histograms = (
            self._child(self.request_seconds, comm),
            self._child(self.transform_seconds, comm),
        )
        return counters, histograms

    def refused(self, comm: str, status: int) -> None:
        self._child(self.objects, comm, FAILED, str(status)).inc()

    def direct_put(self, hop: str, event: str) -> None:
        self.tally.count(self._child(self.puts[event], hop))

    def ws_connection(self, delta: int) -> None:
        self.ws_connections.inc(delta)

    def ws_queued(self, delta: int) -> None:
        self._ws_tasks_queued += delta

    def unreported_failure(self, comm: str) -> None:
        self._child(self.unreported, comm).inc()

    def overrun(self) -> None:
        self.overruns.inc()

    def memory_limit(self, limit: int) -> None:
        self.inflight_limit.set(limit)

    def memory(self, reserved: Callable[[], int]) -> None:
        self.tally.sample(self.inflight_bytes, reserved)

    def memory_waiting(self, delta: int, seconds: float = 0.0) -> None:
        self.waiting.inc(delta)
        if delta > 0:
            self.waits.inc()
        else:
            self.wait_seconds.inc(seconds)


NULL = Observer()
_observer: PrometheusObserver | None = None
_lock = threading.Lock()


def observer(settings: Settings) -> Observer:
    """This process's observer (its metrics are created once, on first use).

    The ``*_created`` series are off (as in multiprocess mode, which has none): one series
    per counter is enough.
    """
    global _observer
    if not settings.metrics:
        return NULL
    if _observer is None:
        with _lock:
            if _observer is None:
                disable_created_metrics()  # type: ignore[no-untyped-call]
                _observer = PrometheusObserver()
    return _observer


def flush() -> None:
    """Write what this process counted to the shared files now (before a scrape, at exit)."""
    if _observer is not None:
        _observer.tally.flush()


def metrics_reply(settings: Settings) -> Reply:
    """The answer to a scrape: the pod's metrics, or 404 when they are off."""
    if not settings.metrics:
        text = (
            "Metrics are off (AISETL_METRICS=false): unset it or set AISETL_METRICS=true "
            "to serve GET /metrics"
        )
        return Reply(404, {"Content-Type": TEXT_PLAIN}, text.encode())
    observer(settings)  # our metrics exist (at zero) before the first object
    flush()  # this worker's counts are current; another's are at most FLUSH_INTERVAL old
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not os.path.isdir(path):
        return Reply(200, {"Content-Type": CONTENT_TYPE}, generate_latest(REGISTRY))
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    registry.register(PodProcesses(path))
    for attempt in range(_READ_ATTEMPTS):
        try:
            return Reply(200, {"Content-Type": CONTENT_TYPE}, generate_latest(registry))
        except (struct.error, ValueError):
            # A worker starting right now has created its file and not yet written its
            # header: read again in a moment.
            if attempt + 1 == _READ_ATTEMPTS:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")  # pragma: no cover


# --- several worker processes ------------------------------------------------------------------


@contextlib.contextmanager
def shared_folder() -> Iterator[str]:
    """Around forking workers: the folder where every worker's metrics live (removed after).

    A folder given in ``PROMETHEUS_MULTIPROC_DIR`` is used as it is and kept.
    """
    given = os.environ.get(MULTIPROC_ENV)
    path = given or tempfile.mkdtemp(prefix="aisetl-metrics-")
    if not given:
        os.environ[MULTIPROC_ENV] = path
    _use_files()
    owner = os.getpid()
    with open(os.path.join(path, _SUPERVISOR_FILE), "w") as file:
        file.write(str(owner))
    try:
        yield path
    finally:
        # A worker forked inside this block may leave it too (gunicorn's exit by SystemExit):
        # only the process that made the folder removes it.
        if not given and os.getpid() == owner:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(path, ignore_errors=True)


def _use_files() -> None:
    """Make metrics created from now on live in the shared folder.

    prometheus_client chooses how values are kept when it is first imported; ours are created
    after the workers fork, so choosing again here is enough.
    """
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


def worker_started() -> None:
    """In a new worker process: list it among the pod's processes."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        with open(os.path.join(path, f"{_WORKER_PREFIX}{os.getpid()}"), "w"):
            pass


def worker_exited(pid: int) -> None:
    """In the supervisor, after worker ``pid`` ended: its gauges stop counting."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not os.path.isdir(path):
        return
    _multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    with contextlib.suppress(OSError):
        os.remove(os.path.join(path, f"{_WORKER_PREFIX}{pid}"))


class PodProcesses:
    """``process_*`` metrics of the supervisor and every live worker, labelled ``pid``."""

    def __init__(self, path: str) -> None:
        self._path = path

    def pids(self) -> list[int]:
        """The supervisor's and the live workers' process IDs."""
        found: list[int] = []
        with (
            contextlib.suppress(OSError, ValueError),
            open(os.path.join(self._path, _SUPERVISOR_FILE)) as file,
        ):
            found.append(int(file.read().strip()))
        for name in sorted(os.listdir(self._path)):
            if name.startswith(_WORKER_PREFIX) and name[len(_WORKER_PREFIX) :].isdigit():
                found.append(int(name[len(_WORKER_PREFIX) :]))
        return [pid for pid in found if os.path.exists(f"/proc/{pid}")]

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for pid in self.pids():
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in collector.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(families.values())
