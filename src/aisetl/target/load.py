"""Closed-loop load through the emulated target: throughput, latency and memory of a server.

A :class:`LoadGenerator` sends the objects of a bucket to one ETL server the way a target does
(the emulator's :class:`~aisetl.target.driver.Driver` and :class:`~aisetl.target.ws.WSPool`),
``concurrency`` requests at a time, for a fixed time, and checks every answer byte for byte.
It serves ``aisetl bench`` and the side-by-side benchmarks of the repository.

Modes: ``hpush`` (PUT with the bytes), ``fqn`` (PUT with ``etl_fqn``, the server reads the
file), ``hpull`` (the target's GET; the server fetches the bytes from the target), ``ws``
(pipelined tasks over a pool of connections) and ``direct`` (hpush whose result the server
PUTs to a second target, which checks it instead of storing it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aisetl import comm as comms
from aisetl.http_client import HTTPClient, TransportError
from aisetl.protocol import ETL_OBJECT_PATH, HEALTH_PATH
from aisetl.target.driver import Task, TransformResult
from aisetl.target.http import Reply, Request
from aisetl.target.store import Bucket
from aisetl.target.wire import UnameError, destination_hop, parse_etl_object_path
from aisetl.target.ws import WSPool

if TYPE_CHECKING:
    from aisetl.target.cluster import ETL, AsyncCluster

MODES = comms.LOAD_MODES
#: Connections of a target's offline ws pool (``bundle_multiplier`` 2 x 4, §7.2).
WS_POOL_MAX = 8
#: Interval and timeout of the ``/health`` probes sent during a cell (a kubelet: 10 s, 5 s).
HEALTH_INTERVAL = 0.1
HEALTH_TIMEOUT = 5.0
KIB = 1024
MIB = 1024 * KIB

Expect = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Cell:
    """One measurement: a mode, an object size and a number of requests in flight."""

    mode: str
    size: int
    concurrency: int
    duration: float = 3.0  # seconds measured
    warmup: float = 0.5  # seconds run before measuring
    requests: int = 0  # when set: send exactly this many objects, all measured (no warmup)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if (
            self.size < 0
            or self.concurrency < 1
            or self.duration <= 0
            or self.warmup < 0
            or self.requests < 0
        ):
            raise ValueError(f"invalid cell {self}")


@dataclass
class CellResult:
    """What one cell measured."""

    cell: Cell
    count: int = 0  # objects answered correctly inside the measured window
    seconds: float = 0.0  # length of the measured window
    bytes_in: int = 0  # object bytes sent (or read by the server) in the window
    p50: float = 0.0  # latency, seconds
    p99: float = 0.0
    failed: int = 0  # error answers and transport failures (whole run)
    mismatched: int = 0  # answers whose bytes differ from the expected ones (whole run)
    first_error: str = ""
    rss_idle: int = 0  # server processes' resident bytes before the cell
    rss_peak: int = 0  # sum of each server process's peak during the cell
    health_p99: float = 0.0  # latency of ``GET /health`` probes sent during the cell
    health_failed: int = 0  # probes without a 200 answer
    answered: int = 0  # objects answered correctly during the whole cell (warmup included)
    server_cpu: float = 0.0  # CPU seconds the server's processes used during the cell
    generator_cpu: float = 0.0  # CPU seconds this process (generator and target) used
    machine_cpu: float = 0.0  # CPU seconds every process of the machine used (Linux)
    elapsed: float = 0.0  # seconds the whole cell took (warmup included)

    @property
    def other_cpu_share(self) -> float:
        """Share of the machine's CPU time that went to neither server nor generator."""
        if self.elapsed <= 0 or not self.machine_cpu:
            return 0.0
        other = self.machine_cpu - self.server_cpu - self.generator_cpu
        return max(0.0, other) / (self.elapsed * (os.cpu_count() or 1))

    @property
    def ok(self) -> bool:
        """Every answer was right and at least one arrived."""
        return self.failed == 0 and self.mismatched == 0 and self.count > 0

    @property
    def objects_per_s(self) -> float:
        """Objects per second in the measured window."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def mib_per_s(self) -> float:
        """Object MiB per second in the measured window."""
        return self.bytes_in / MIB / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_cpu_per_object(self) -> float:
        """Server CPU seconds per answered object."""
        return self.server_cpu / self.answered if self.answered else 0.0

    @property
    def generator_cpu_per_object(self) -> float:
        """Load generator (and emulated target) CPU seconds per answered object."""
        return self.generator_cpu / self.answered if self.answered else 0.0


def make_payload(size: int, seed: int) -> bytes:
    """Deterministic bytes; sizes above 1 MiB repeat a random 1 MiB block (cheap to build)."""
    rng = random.Random(seed)
    if size <= MIB:
        return rng.randbytes(size)
    block = rng.randbytes(MIB)
    whole, rest = divmod(size, MIB)
    return block * whole + block[:rest]


class CachedBucket(Bucket):
    """A bucket whose objects are also kept in memory, so sending one costs no file read."""

    def __init__(self, bucket: Bucket) -> None:
        super().__init__(bucket.name, bucket.root, bucket.provider, bucket.namespace)
        self._cache: dict[str, bytes] = {}

    def put(self, name: str, data: bytes | Sequence[bytes]) -> int:  # type: ignore[override]
        """Store the object (file and memory)."""
        blob = data if isinstance(data, bytes) else b"".join(data)
        size = super().put(name, blob)
        self._cache[name] = blob
        return size

    def get(self, name: str) -> bytes:
        """The object's bytes from memory."""
        found = self._cache.get(name)
        return found if found is not None else super().get(name)

    def exists(self, name: str) -> bool:
        """Whether the object exists (memory first)."""
        return name in self._cache or super().exists(name)

    def forget(self) -> None:
        """Drop the in-memory copies and the files."""
        for name in list(self._cache):
            self.delete(name)
        self._cache.clear()


# --- memory of the server's processes --------------------------------------------------------


def session_pids(session: int) -> list[int]:
    """Processes whose session ID is ``session`` (a server we started and its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == session:
            pids.append(int(entry))
    return pids


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu_seconds() -> float:
    """CPU time all processes of the machine have used since boot (0 where unknown)."""
    try:
        with open("/proc/stat", "rb") as file:
            fields = file.readline().split()[1:]
    except OSError:
        return 0.0
    busy = sum(int(value) for index, value in enumerate(fields) if index not in (3, 4))
    return busy / _CLOCK_TICKS


def _status_kib(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class ProcessMemory:
    """Resident memory of a process and every process of its session (Linux ``/proc``).

    The peak of a cell is the sum over processes of each one's high-water mark (``VmHWM``),
    reset at the start of the cell; where the reset is not allowed, ``VmRSS`` is sampled.
    """

    def __init__(self, session: int) -> None:
        self.session = session
        self.available = os.path.isdir(f"/proc/{session}")
        self._exact = True
        self._sampled = 0

    def pids(self) -> list[int]:
        """The processes measured now."""
        return session_pids(self.session) if self.available else []

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the processes have used so far."""
        ticks = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / _CLOCK_TICKS

    def rss(self) -> int:
        """Resident bytes now (sum over the processes)."""
        return sum(_status_kib(pid, b"VmRSS:") for pid in self.pids()) * KIB

    def reset_peak(self) -> None:
        """Start a new peak measurement."""
        self._sampled = self.rss()
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as file:
                    file.write("5")
            except OSError:
                self._exact = False

    def sample(self) -> None:
        """Take a ``VmRSS`` sample (used when high-water marks cannot be reset)."""
        if not self._exact:
            self._sampled = max(self._sampled, self.rss())

    def peak(self) -> int:
        """Peak resident bytes since :meth:`reset_peak`."""
        if not self._exact:
            return max(self._sampled, self.rss())
        return sum(_status_kib(pid, b"VmHWM:") for pid in self.pids()) * KIB


# --- the generator -------------------------------------------------------------------------


@dataclass
class _Window:
    start: float
    end: float
    latencies: list[float] = field(default_factory=list)
    bytes_in: int = 0


class LoadGenerator:
    """Sends objects to one server at a time through an emulated cluster; measures the answers.

    The cluster needs two targets: the first holds the objects (bucket ``bench``), the second
    receives direct puts (``direct`` mode) and checks them instead of storing them. Call
    :meth:`use` to pick the server (an ETL of the cluster) and the expected answers, then
    :meth:`prepare` objects and :meth:`run` cells. ``expect`` maps an object's bytes to the
    answer it must get; without it the first answer for each object becomes the expected one
    (a consistency check for transforms the caller cannot predict).
    """

    def __init__(self, cluster: AsyncCluster, *, obj_timeout: float = 60.0) -> None:
        if len(cluster.targets) < 2:
            raise ValueError("the load generator needs two targets (the second gets direct puts)")
        self.cluster = cluster
        self.obj_timeout = obj_timeout
        self.etl: ETL | None = None
        self.expect: Expect | None = None
        self.memory: ProcessMemory | None = None
        source = cluster.targets[0].bucket("bench")
        self.source = CachedBucket(source)
        cluster.targets[0].mountpath._buckets[("ais", "", "bench")] = self.source
        cluster.targets[1].bucket("bench-dst")
        self._expected: dict[str, bytes] = {}
        self._names: dict[int, list[str]] = {}
        self._sink_mismatch = 0
        self._sink_error = ""
        sink = cluster.targets[1].server
        self._sink_next = sink.handler
        sink.handler = self._sink

    def use(
        self, etl: ETL, *, expect: Expect | None = None, memory: ProcessMemory | None = None
    ) -> None:
        """Send the next cells to ``etl``'s server and check its answers with ``expect``."""
        self.etl = etl
        self.expect = expect
        self.memory = memory
        self._expected.clear()

    # --- objects -----------------------------------------------------------------------

    def prepare(self, size: int, count: int = 16, data: Sequence[bytes] | None = None) -> None:
        """Put ``count`` objects of ``size`` bytes (or the given ``data``) into the bucket."""
        blobs = list(data) if data is not None else [make_payload(size, i) for i in range(count)]
        names = []
        for index, blob in enumerate(blobs):
            name = f"obj-{size}-{index}"
            self.source.put(name, blob)
            names.append(name)
        self._names[size] = names

    def drop(self, size: int) -> None:
        """Forget the objects of one size (frees their memory and files)."""
        for name in self._names.pop(size, []):
            self.source.delete(name)
            self.source._cache.pop(name, None)
            self._expected.pop(name, None)

    def _expected_for(self, name: str) -> bytes | None:
        found = self._expected.get(name)
        if found is None and self.expect is not None:
            found = self.expect(self.source.get(name))
            self._expected[name] = found
        return found

    def _matches(self, name: str, content: bytes) -> bool:
        expected = self._expected_for(name)
        if expected is None:
            self._expected[name] = content
            return True
        return content == expected

    # --- the direct-put receiver ---------------------------------------------------------

    async def _sink(self, request: Request) -> Reply:
        if request.method != "PUT" or not request.path.startswith(ETL_OBJECT_PATH + "/"):
            return await self._sink_next(request)
        try:
            parsed = parse_etl_object_path(request.path)
        except UnameError as exc:
            return Reply(exc.status, str(exc).encode())
        if self.etl is None or parsed.secret != self.etl.secret:
            return Reply(400, b"unrecognized request source")
        if not self._matches(parsed.object.name, request.body):
            self._sink_mismatch += 1
            self._sink_error = (
                self._sink_error or f"direct put of {parsed.object.name}: wrong bytes"
            )
        return Reply(200)

    # --- one cell ------------------------------------------------------------------------

    def _task(self, mode: str, name: str, job_id: str) -> Task:
        if mode == "direct":
            uname = self.cluster.targets[1].bucket("bench-dst").object_name(name).uname
            hop = destination_hop(self.cluster.targets[1].url, uname, job_id)
            return Task(self.source, name, fqn=False, hops=(hop,), sink=False)
        return Task(self.source, name, fqn=mode == "fqn", inline=False)

    async def run(self, cell: Cell) -> CellResult:
        """Run one cell; the objects of ``cell.size`` must have been prepared."""
        names = self._names.get(cell.size)
        etl = self.etl
        if etl is None:
            raise RuntimeError("no server to measure: call use() first")
        if not names:
            raise ValueError(f"no objects of {cell.size} bytes: call prepare() first")
        result = CellResult(cell)
        tasks = [self._task(cell.mode, name, "bench") for name in names]
        server = etl.server(0)
        pool: WSPool | None = None
        if cell.mode == "ws":
            pool = self.cluster.ws_pool(etl, 0, min(cell.concurrency, WS_POOL_MAX))
            await pool.open()
        driver = self.cluster.targets[0].driver
        sizes = {name: self.source.size(name) for name in names}

        async def send(task: Task) -> TransformResult:
            if cell.mode == "hpull":
                return await driver.hpull(server.host, server.port, task, self.obj_timeout)
            if cell.mode == "ws":
                assert pool is not None
                return await driver.ws(pool, task)
            return await driver.hpush(server.host, server.port, task, self.obj_timeout)

        now = time.monotonic()
        if cell.requests:
            window = _Window(now, now + 1e9)
        else:
            window = _Window(now + cell.warmup, now + cell.warmup + cell.duration)
        mismatch_before = self._sink_mismatch
        counter = itertools.count()

        async def worker() -> None:
            while True:
                started = time.monotonic()
                if started >= window.end:
                    return
                number = next(counter)
                if cell.requests and number >= cell.requests:
                    return
                task = tasks[number % len(tasks)]
                answer = await send(task)
                finished = time.monotonic()
                if answer.error is not None:
                    result.failed += 1
                    result.first_error = result.first_error or answer.error.msg
                    continue
                if cell.mode == "direct":
                    good = answer.delivered
                else:
                    good = answer.content is not None and self._matches(task.name, answer.content)
                if not good:
                    result.mismatched += 1
                    result.first_error = result.first_error or f"wrong answer for {task.name}"
                    continue
                result.answered += 1
                if window.start <= finished <= window.end:
                    window.latencies.append(finished - started)
                    window.bytes_in += sizes[task.name]

        memory = self.memory
        if memory is not None:
            result.rss_idle = memory.rss()
            memory.reset_peak()
            server_cpu = memory.cpu_seconds()
        generator_cpu = time.process_time()
        machine_cpu = machine_cpu_seconds()
        health: list[float] = []
        workers = [asyncio.ensure_future(worker()) for _ in range(cell.concurrency)]
        prober = asyncio.ensure_future(
            self._probe_health(server.host, server.port, health, result, window.start)
        )
        began = time.monotonic()
        try:
            limit = (cell.requests * self.obj_timeout) if cell.requests else 0.0
            deadline = (began + limit) if cell.requests else window.end + self.obj_timeout
            while True:
                left = deadline - time.monotonic()
                done, pending = await asyncio.wait(workers, timeout=min(max(left, 0), 0.25))
                if memory is not None:
                    memory.sample()
                if not pending:
                    break
                if left <= 0:
                    for task in pending:
                        task.cancel()
                    result.failed += len(pending)
                    result.first_error = result.first_error or "no answer within the time limit"
                    break
            for item in done:
                if not item.cancelled() and item.exception() is not None:
                    error = item.exception()
                    result.failed += 1
                    result.first_error = result.first_error or f"{type(error).__name__}: {error}"
        finally:
            prober.cancel()
            for item in workers:
                item.cancel()
            if pool is not None:
                await pool.close()
        result.generator_cpu = time.process_time() - generator_cpu
        result.machine_cpu = machine_cpu_seconds() - machine_cpu
        result.elapsed = time.monotonic() - began
        if memory is not None:
            result.rss_peak = memory.peak()
            result.server_cpu = memory.cpu_seconds() - server_cpu
        result.mismatched += self._sink_mismatch - mismatch_before
        if self._sink_mismatch > mismatch_before:
            result.first_error = result.first_error or self._sink_error
        latencies = sorted(window.latencies)
        result.count = len(latencies)
        result.seconds = (time.monotonic() - began) if cell.requests else cell.duration
        result.bytes_in = window.bytes_in
        if latencies:
            result.p50 = _percentile(latencies, 0.50)
            result.p99 = _percentile(latencies, 0.99)
        if health:
            result.health_p99 = _percentile(sorted(health), 0.99)
        return result

    async def _probe_health(
        self, host: str, port: int, latencies: list[float], result: CellResult, start: float
    ) -> None:
        """``GET /health`` every ``HEALTH_INTERVAL`` s on its own connection, as a kubelet does.

        Probes sent before ``start`` (the warmup) are not counted.
        """
        client = HTTPClient(max_idle_per_host=1)
        head = f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        try:
            while True:
                started = time.monotonic()
                try:
                    response = await client.send(host, port, head, timeout=HEALTH_TIMEOUT)
                    ok = response.status == 200
                except TransportError:
                    ok = False
                if started >= start:
                    latencies.append(time.monotonic() - started)
                    if not ok:
                        result.health_failed += 1
                await asyncio.sleep(HEALTH_INTERVAL)
        finally:
            await client.close()


def _percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def temp_root() -> Path:
    """A folder for benchmark buckets: memory-backed (``/dev/shm``) when there is one."""
    shm = Path("/dev/shm")
    return (
        shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(os.environ.get("TMPDIR", "/tmp"))
    )
