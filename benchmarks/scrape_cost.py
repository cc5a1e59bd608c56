"""What /metrics costs a loaded server: CPU per object with a scrape every second, with none,
and with the metrics off (``AISETL_METRICS=false``, no counting at all).

``python -m benchmarks.scrape_cost`` (what ``make bench-scrape`` runs) loads each server
(two workers) with small hpush objects through the emulated target, 16 in flight, and reads
the CPU time of the server's processes: the same load with a Prometheus-style scrape every
second (one ``GET /metrics`` on a new connection) and without. Answers are checked byte for
byte. Two cores shared with other work make single numbers noisy: compare the columns, and
repeat a run (``--repeat``) before trusting a difference of a few percent.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aisetl.config import parse_size
from aisetl.target import ETL, Cluster
from aisetl.target.load import Cell, CellResult, LoadGenerator, ProcessMemory, temp_root

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("http", "flask", "fastapi")


@dataclass
class Scraper:
    """Scrapes ``url``/metrics every ``interval`` seconds from a thread until stopped."""

    url: str
    interval: float = 1.0
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.perf_counter()
            with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
                self.sizes.append(len(response.read()))
            self.seconds.append(time.perf_counter() - started)


def launch(cluster: Cluster, framework: str, metrics: bool, workers: int) -> ETL:
    argv = [
        sys.executable, "-m", "aisetl", "serve", "tests.transformers:Upper",
        "--server", framework, "--host", "127.0.0.1", "--port", "{port}",
        "--workers", str(workers),
    ]  # fmt: skip
    return cluster.launch(
        f"{framework}-{'counted' if metrics else 'dark'}",
        argv,
        env={"PYTHONPATH": str(REPO), "AISETL_METRICS": "true" if metrics else "false"},
        cwd=str(REPO),
        init_timeout=60,
        per_target=False,
    )


def cell_on(cluster: Cluster, etl: ETL, cell: Cell, scrape: bool) -> tuple[CellResult, Scraper]:
    generator = cluster.call(lambda: LoadGenerator(cluster.core, obj_timeout=60.0))
    memory = ProcessMemory(etl.processes[0].pid)
    cluster.call(functools.partial(generator.use, etl, expect=bytes.upper, memory=memory))
    generator.prepare(cell.size, 16)
    scraper = Scraper(etl.url(), interval=1.0 if scrape else 1e9)
    with scraper:
        result = cluster.run(generator.run(cell))
    generator.drop(cell.size)
    return result, scraper


def scrape_cpu(etl: ETL, scrapes: int = 50) -> tuple[float, int]:
    """Server CPU seconds per scrape on the idle server, and the answer's size."""
    memory = ProcessMemory(etl.processes[0].pid)
    before = memory.cpu_seconds()
    size = 0
    for _ in range(scrapes):
        with urllib.request.urlopen(etl.url() + "/metrics", timeout=10) as response:
            size = len(response.read())
    return (memory.cpu_seconds() - before) / scrapes, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--size", default="1KiB", help="object size (1KiB)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell (6)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="cells of each kind (1)")
    args = parser.parse_args(argv)
    size = parse_size("--size", args.size)
    cell = Cell("hpush", size, args.concurrency, args.duration, 1.0)
    print(
        f"scrape cost: hpush {size} B objects, {args.concurrency} in flight, "
        f"{args.workers} workers, {args.duration:g} s cells",
        flush=True,
    )
    print(
        f"{'server':8} {'variant':18} {'obj/s':>8} {'server CPU/obj':>15} {'scrapes':>8} "
        f"{'scrape p50':>11} {'scrape max':>11} {'scrape size':>12}",
        flush=True,
    )
    ok = True
    with (
        tempfile.TemporaryDirectory(prefix="aisetl-scrape-", dir=temp_root()) as root,
        Cluster(root, targets=2, use_uvloop=True, record=0, obj_timeout=60) as cluster,
    ):
        for framework in args.server:
            counted = launch(cluster, framework, True, args.workers)
            dark = launch(cluster, framework, False, args.workers)
            for _ in range(args.repeat):
                for variant, etl, scrape in (
                    ("metrics off", dark, False),
                    ("no scrape", counted, False),
                    ("scrape every 1 s", counted, True),
                ):
                    result, scraper = cell_on(cluster, etl, cell, scrape)
                    ok = ok and result.ok
                    p50 = statistics.median(scraper.seconds) * 1000 if scraper.seconds else 0
                    worst = max(scraper.seconds, default=0) * 1000
                    print(
                        f"{framework:8} {variant:18} {result.objects_per_s:8.0f} "
                        f"{result.server_cpu_per_object * 1e6:12.0f} us "
                        f"{len(scraper.seconds):8} {p50:8.1f} ms {worst:8.1f} ms "
                        f"{(scraper.sizes or [0])[-1]:9} B"
                        + ("" if result.ok else f"  FAILED: {result.first_error}"),
                        flush=True,
                    )
            cpu, size = scrape_cpu(counted)
            print(
                f"{framework:8} one scrape of the idle server: {cpu * 1000:.1f} ms of server CPU "
                f"({size} B): at one a second, {cpu * 100:.2f} % of a core",
                flush=True,
            )
            cluster.stop(counted)
            cluster.stop(dark)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
