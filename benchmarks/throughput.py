"""Two presets of ``python -m benchmarks.run``: ``--batching`` and ``--waiting``.

``--batching``: the speech_detect example's real model (Silero VAD) served by FastAPI with two
workers, fed batches (``transform_batch``) and one call per object (``transform``), the same
clips at the same concurrency in the same run; it prints objects/s of each, their ratio, and
the batch sizes the servers saw.

``--waiting``: transforms that wait (1 s each) arriving all at once at one worker, in every
server: 64 ``async`` ones and 32 synchronous ones. Each cell prints how long the whole burst
took; 1 s is ideal (every object started at once). The servers run with their default
threads (128; a Flask request holds one while its transform waits).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aisetl.target import ETL, Cluster
from aisetl.target.load import Cell, CellResult, LoadGenerator, ProcessMemory
from benchmarks.ours import CLASSES
from benchmarks.servers import REPO, THREADS

SPEECH = REPO / "examples" / "speech_detect" / "testdata" / "speech.flac"


@dataclass
class Measured:
    """One cell of one server."""

    label: str
    result: CellResult
    batches: dict[int, int]  # batch size -> batches, during the cell


def serve_argv(transform: str, framework: str, workers: int) -> list[str]:
    """``aisetl serve`` of one of the benchmark's classes (``{port}`` left to the launcher)."""
    return [
        sys.executable, "-m", "aisetl", "serve", f"benchmarks.ours:{CLASSES[transform]}",
        "--server", framework, "--workers", str(workers),
        "--host", "127.0.0.1", "--port", "{port}",
    ]  # fmt: skip


def clips(count: int = 16, seconds: float = 1.5) -> list[bytes]:
    """``count`` WAV clips of the example's recorded sentence, each cut at its own offset."""
    import numpy as np
    import soundfile as sf

    speech, rate = sf.read(SPEECH, dtype="float32")
    made = []
    for index in range(count):
        start = int(index * 0.1 * rate)
        part = np.concatenate([np.zeros(int(0.2 * rate), np.float32), speech[start:]])
        buf = io.BytesIO()
        sf.write(buf, part[: int(seconds * rate)], rate, format="WAV")
        made.append(buf.getvalue())
    return made


def read_batches(folder: Path) -> dict[int, int]:
    """Batch sizes every worker wrote to ``folder`` (``AISETL_BATCH_STATS``), summed."""
    sizes: dict[int, int] = {}
    for file in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            for size, count in json.loads(file.read_text())["sizes"].items():
                sizes[int(size)] = sizes.get(int(size), 0) + int(count)
    return sizes


def batch_line(sizes: dict[int, int]) -> str:
    """``412 batches, mean 31.2 objects, sizes 1-32``."""
    batches = sum(sizes.values())
    if not batches:
        return "no batches"
    objects = sum(size * count for size, count in sizes.items())
    return (
        f"{batches} batches, mean {objects / batches:.1f} objects, sizes {min(sizes)}-{max(sizes)}"
    )


@contextlib.contextmanager
def emulated() -> Iterator[Cluster]:
    """Two emulated targets on uvloop (the second receives direct puts)."""
    from aisetl.target.load import temp_root

    with (
        tempfile.TemporaryDirectory(prefix="aisetl-bench-", dir=temp_root()) as root,
        Cluster(root, targets=2, use_uvloop=True, record=0, obj_timeout=120) as cluster,
    ):
        yield cluster


@dataclass
class Started:
    """A running server and the folder its workers write batch sizes to."""

    label: str
    etl: ETL
    stats: Path
    memory: ProcessMemory


def start(
    cluster: Cluster, label: str, argv: list[str], stats: Path, threads: int | None = THREADS
) -> Started:
    """Start one server (``AISETL_BATCH_STATS`` set to ``stats``) and wait until it is healthy."""
    env = {"PYTHONPATH": str(REPO), "AISETL_BATCH_STATS": str(stats)}
    if threads is not None:
        env["AISETL_THREADS"] = str(threads)
    print(f"== {label}", file=sys.stderr, flush=True)
    etl = cluster.launch(
        label[:32].rstrip("-"), argv, env=env, cwd=str(REPO), per_target=False,
        init_timeout=120, obj_timeout=120,
    )  # fmt: skip
    return Started(label, etl, stats, ProcessMemory(etl.processes[0].pid))


def run_cell(cluster: Cluster, generator: LoadGenerator, server: Started, cell: Cell) -> Measured:
    """One cell on one server (answers must be the same each time for an object)."""
    cluster.call(lambda: generator.use(server.etl, expect=None, memory=server.memory))
    before = read_batches(server.stats)
    result = cluster.run(generator.run(cell))
    time.sleep(0.5)  # the workers write their counts at most every 0.2 s
    after = read_batches(server.stats)
    grew = {
        size: count - before.get(size, 0)
        for size, count in after.items()
        if count > before.get(size, 0)
    }
    measured = Measured(server.label, result, grew)
    print("   " + line(measured), file=sys.stderr, flush=True)
    return measured


def line(m: Measured) -> str:
    """One measured cell, for people."""
    r = m.result
    status = "ok" if r.ok else f"FAIL ({r.failed} failed, {r.mismatched} wrong: {r.first_error})"
    return (
        f"{m.label:28} {r.cell.mode:6} c{r.cell.concurrency:<3} {r.objects_per_s:8.1f} obj/s  "
        f"p50 {r.p50 * 1000:7.1f} ms  server CPU/obj {r.server_cpu_per_object * 1000:6.2f} ms"
        f"  {batch_line(m.batches) if m.batches else ''}  {status}"
    )


def batching(args: argparse.Namespace) -> int:
    """With and without batching, the same clips, the same run; the ratio of objects/s.

    Both servers run side by side and their cells alternate (batched, per object, batched,
    ...), so the two see the same machine; every pair is printed with its ratio.
    """
    workers = (args.workers or [1])[0]
    # a target sends many objects at once: 32 in flight per worker fill its batches
    concurrency = (args.concurrency or [32 * workers])[0]
    modes = args.mode or ["hpush", "ws"]
    duration = args.duration or 5.0
    warmup = args.warmup if args.warmup is not None else 2.0
    rounds = max(args.rounds, 1)
    pairs: list[tuple[Measured, Measured]] = []
    with emulated() as cluster, tempfile.TemporaryDirectory(prefix="aisetl-batches-") as stats:
        generator = cluster.call(lambda: LoadGenerator(cluster.core, obj_timeout=120))
        generator.prepare(0, 16, clips())
        servers = []
        for transform in ("speech", "speech-per-object"):
            folder = Path(stats) / transform
            folder.mkdir()
            argv = serve_argv(transform, "fastapi", workers)
            servers.append(start(cluster, f"ours-fastapi-{transform}", argv, folder))
        try:
            for _ in range(rounds):
                for mode in modes:
                    cell = Cell(mode, 0, concurrency, duration, warmup)
                    batched = run_cell(cluster, generator, servers[0], cell)
                    single = run_cell(cluster, generator, servers[1], cell)
                    pairs.append((batched, single))
        finally:
            for server in servers:
                cluster.stop(server.etl)
    print(f"\nSpeech detection (Silero VAD), FastAPI, {workers} workers, concurrency {concurrency}")
    print("| mode | batched obj/s | per-object obj/s | ratio | batches seen |")
    print("|---|---|---|---|---|")
    ok = True
    for batched, single in pairs:
        ok = ok and batched.result.ok and single.result.ok
        a, b = batched.result.objects_per_s, single.result.objects_per_s
        ratio = f"{a / b:.1f}x" if b else "—"
        print(f"| {batched.result.cell.mode} | {a:.1f} | {b:.1f} | {ratio} | "
              f"{batch_line(batched.batches)} |")  # fmt: skip
    return 0 if ok else 1


def waiting(args: argparse.Namespace) -> int:
    """Bursts of waiting transforms at one worker: how long until every object is answered."""
    frameworks = [name.removeprefix("ours-") for name in args.server or []] or [
        "fastapi", "flask", "http",
    ]  # fmt: skip
    bursts = [("async-sleep", 64), ("sync-sleep", 32)]
    rounds = max(args.rounds, 1)
    results: list[tuple[str, str, int, float, bool]] = []
    with emulated() as cluster, tempfile.TemporaryDirectory(prefix="aisetl-batches-") as stats:
        generator = cluster.call(lambda: LoadGenerator(cluster.core, obj_timeout=120))
        generator.prepare(0, 16, [b"x" * 1024])
        for framework in frameworks:
            for transform, count in bursts:
                folder = Path(stats) / f"{framework}-{transform}"
                folder.mkdir()
                argv = serve_argv(transform, framework, 1)
                # the servers' own thread count (a Flask request holds a thread while it waits)
                server = start(cluster, f"ours-{framework}-{transform}", argv, folder, None)
                try:
                    for _ in range(rounds):
                        cell = Cell("hpush", 0, count, requests=count)
                        m = run_cell(cluster, generator, server, cell)
                        results.append((framework, transform, count, m.result.elapsed, m.result.ok))
                finally:
                    cluster.stop(server.etl)
    print("\nWaiting transforms (1 s each), all sent at once to one worker; ideal: 1 s")
    print("| server | transform | objects | seconds, each run |")
    print("|---|---|---|---|")
    ok = True
    for framework in frameworks:
        for transform, count in bursts:
            times = [r for r in results if r[0] == framework and r[1] == transform]
            ok = ok and all(r[4] for r in times)
            shown = ", ".join(f"{r[3]:.2f}" + ("" if r[4] else " FAIL") for r in times)
            print(f"| {framework} | {transform} | {count} | {shown} |")
    return 0 if ok else 1
