"""Side-by-side benchmark: aisetl's servers against the reference SDK's, and the ceiling.

``python -m benchmarks.run`` (what ``make bench`` runs) measures a quick preset in a minute or
two; ``--full`` measures the whole grid; ``--memory`` sends 1 GiB objects; ``--scaling``
measures a CPU-heavy transform with 1 to N workers; ``--batching`` a real model with and without
batching; ``--waiting`` bursts of transforms that wait (see ``benchmarks.throughput``).
Filters (``--mode``, ``--size``, ``--concurrency``, ``--transform``, ``--server``,
``--workers``) narrow any preset.

Every server runs as its own processes on 127.0.0.1: ours with ``aisetl serve``, the
reference's with its own interpreter (``AISETL_REFERENCE_PYTHON``) on uvicorn (the runtime
image's flags), gunicorn (gthread) and its standard-library ``start()``. One emulated cluster
(two targets, on uvloop) is the load generator and the peer of every server; every answer is
checked byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aisetl.target import ETL, Cluster, ServerStartError
from aisetl.target.load import (
    KIB,
    MIB,
    MODES,
    Cell,
    CellResult,
    LoadGenerator,
    ProcessMemory,
    temp_root,
)
from benchmarks import report, transforms
from benchmarks.servers import ALL, BY_NAME, RAW, REFERENCE, ServerKind, reference_python

SIZES = {"1KiB": KIB, "64KiB": 64 * KIB, "1MiB": MIB, "16MiB": 16 * MIB, "1GiB": 1024 * MIB}
CONCURRENCY = (1, 16, 64)
DEFAULT_WORKERS = 2
#: Distinct objects per size (sent round-robin).
OBJECTS = 16
BIG = 16 * MIB


@dataclass
class Run:
    """One server with one transform and worker count, and the cells to measure on it."""

    kind: ServerKind
    transform: str
    workers: int
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Row:
    """One measured cell of one server."""

    server: str
    side: str
    framework: str
    transform: str
    workers: int  # workers asked for (the cell's key)
    result: CellResult
    processes: int = 0  # worker processes the server really runs


def parse_size(text: str) -> int:
    """``1KiB``, ``64KiB``, ``1MiB``, ``16MiB``, ``1GiB`` or a number of bytes."""
    if text in SIZES:
        return SIZES[text]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: use {', '.join(SIZES)} or bytes"
        ) from None


def size_name(size: int) -> str:
    """The preset name of a size, else its bytes."""
    for name, value in SIZES.items():
        if value == size:
            return name
    return f"{size}B"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--full", action="store_true", help="the whole grid (long)")
    preset.add_argument(
        "--memory", action="store_true", help="1 GiB objects: peak RSS, buffered and streaming"
    )
    preset.add_argument(
        "--scaling", action="store_true", help="CPU-heavy transform, 1..cores workers, /health"
    )
    preset.add_argument(
        "--batching", action="store_true", help="a real model with and without batching"
    )
    preset.add_argument(
        "--waiting", action="store_true", help="bursts of 1 s async and sync transforms"
    )
    parser.add_argument("--mode", nargs="+", choices=MODES, help="modes to measure")
    parser.add_argument("--size", nargs="+", type=parse_size, help="object sizes (e.g. 1KiB)")
    parser.add_argument("--concurrency", nargs="+", type=int, help="requests in flight")
    parser.add_argument(
        "--transform", nargs="+", choices=transforms.TRANSFORMS, help="transforms to run"
    )
    parser.add_argument(
        "--server",
        nargs="+",
        help="servers: ours, ref, raw, or names such as ours-fastapi ref-flask",
    )
    parser.add_argument("--workers", nargs="+", type=int, help="worker processes per server")
    parser.add_argument(
        "--rounds", type=int, default=2, help="--batching, --waiting: times each cell is run"
    )
    parser.add_argument("--duration", type=float, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, help="seconds run before measuring")
    parser.add_argument("--objects", type=int, default=OBJECTS, help="distinct objects per size")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="folder for CSV and PNG"
    )
    parser.add_argument(
        "--docs", action="store_true", help="also write docs/performance.md (and its chart)"
    )
    parser.add_argument(
        "--section", help="name of the docs/performance.md section to replace (default: preset)"
    )
    return parser


def _servers(names: Sequence[str] | None, default: Sequence[ServerKind]) -> list[ServerKind]:
    if not names:
        return list(default)
    chosen: list[ServerKind] = []
    for name in names:
        group = [k for k in ALL if k.side == name] if name in ("ours", "ref", "raw") else None
        if group is None:
            if name not in BY_NAME:
                raise SystemExit(
                    f"unknown server {name!r}: use ours, ref, raw or one of {list(BY_NAME)}"
                )
            group = [BY_NAME[name]]
        chosen += [k for k in group if k not in chosen]
    return chosen


def plan(args: argparse.Namespace) -> list[Run]:
    """The runs a preset and the filters ask for."""
    cores = os.cpu_count() or 1
    duration = args.duration
    if args.memory:
        modes = args.mode or list(MODES)
        sizes = args.size or [SIZES["1GiB"]]
        runs = []
        for kind in _servers(args.server, [k for k in ALL if k.side != "raw"]):
            for transform in args.transform or ["echo", "stream"]:
                cell_modes = ["hpush"] if transform != "stream" else modes
                cells = [
                    Cell(mode, size, 1, requests=1)
                    for mode in cell_modes
                    for size in sizes
                    if mode != "ws" or kind.ws
                ]
                for workers in args.workers or [1]:
                    # a fresh server per cell: each starts from its own idle memory
                    runs += [Run(kind, transform, workers, [cell]) for cell in cells]
        return runs
    if args.scaling:
        workers_list = args.workers or list(range(1, cores + 1))
        cells = [
            Cell(mode, size, conc, duration or 3.0, args.warmup or 1.0)
            for mode in args.mode or ["hpush"]
            for size in args.size or [KIB]
            for conc in args.concurrency or [16]
        ]
        servers = _servers(args.server, [k for k in ALL if k.side != "raw"])
        return [
            Run(kind, transform, workers, [c for c in cells if c.mode != "ws" or kind.ws])
            for transform in args.transform or ["cpu"]
            for kind in servers
            for workers in workers_list
            if kind.workers_used(workers) == workers or workers == workers_list[0]
        ]
    if args.full:
        grid = [
            (mode, size, conc)
            for mode in args.mode or MODES
            for size in args.size or [KIB, 64 * KIB, MIB, BIG]
            for conc in args.concurrency or CONCURRENCY
        ]
        transform_list = args.transform or ["echo", "md5", "cpu", "gil"]
        duration = duration or 1.5
    else:
        grid = [(mode, KIB, 16) for mode in MODES] + [("hpush", MIB, 16)]
        if args.size or args.concurrency or args.mode:
            grid = [
                (mode, size, conc)
                for mode in args.mode or MODES
                for size in args.size or [KIB]
                for conc in args.concurrency or [16]
            ]
        transform_list = args.transform or ["echo"]
        duration = duration or 1.5
    warmup = args.warmup if args.warmup is not None else 0.5
    runs = []
    servers = _servers(args.server, [RAW, *_interleave()])
    for transform in transform_list:
        for kind in servers:
            if not kind.supports(transform):
                continue
            for workers in args.workers or [DEFAULT_WORKERS]:
                cells = [
                    Cell(
                        mode,
                        size,
                        conc,
                        duration * (3 if size >= BIG else 1),
                        warmup * (3 if size >= BIG else 1),
                    )
                    for mode, size, conc in grid
                    if mode != "ws" or kind.ws
                ]
                if cells:
                    runs.append(Run(kind, transform, workers, cells))
    return runs


def _interleave() -> Iterator[ServerKind]:
    for ref in REFERENCE:
        yield BY_NAME["ours-" + ref.framework]
        yield ref


@contextlib.contextmanager
def cluster() -> Iterator[tuple[Cluster, LoadGenerator]]:
    """Two emulated targets on uvloop and a load generator bound to them."""
    root = tempfile.mkdtemp(prefix="aisetl-bench-", dir=temp_root())
    with Cluster(root, targets=2, use_uvloop=True, record=0, obj_timeout=60) as emulated:
        generator = emulated.call(lambda: LoadGenerator(emulated.core, obj_timeout=60))
        try:
            yield emulated, generator
        finally:
            shutil.rmtree(root, ignore_errors=True)


def launch(emulated: Cluster, run: Run, number: int, ref_python: str | None) -> ETL:
    """Start one server and wait until it is healthy."""
    argv, env = run.kind.command(run.transform, run.workers, ref_python)
    name = f"{run.kind.name}-{run.transform}-{number}"[:32].rstrip("-")
    return emulated.launch(
        name, argv, env=env, cwd=str(Path(__file__).resolve().parents[1]), per_target=False,
        init_timeout=60, obj_timeout=60,
    )  # fmt: skip


def measure(runs: list[Run], objects: int, ref_python: str | None) -> list[Row]:
    """Start each server in turn, measure its cells, stop it."""
    rows: list[Row] = []
    with cluster() as (emulated, generator):
        prepared: set[int] = set()
        for number, run in enumerate(runs):
            for cell in run.cells:
                if cell.size not in prepared:
                    count = 1 if cell.size > BIG else objects
                    generator.prepare(cell.size, count)
                    prepared.add(cell.size)
            label = f"{run.kind.name} {run.transform} x{run.kind.workers_used(run.workers)}"
            print(f"== {label}", file=sys.stderr, flush=True)
            try:
                etl = launch(emulated, run, number, ref_python)
            except (ServerStartError, RuntimeError) as exc:
                print(f"   cannot start: {str(exc).splitlines()[0]}", file=sys.stderr)
                continue
            try:
                process = etl.processes[0]
                memory = ProcessMemory(process.pid)
                expect = _expect(run.transform)
                emulated.call(functools.partial(generator.use, etl, expect=expect, memory=memory))
                for cell in run.cells:
                    result = emulated.run(generator.run(cell))
                    row = Row(
                        run.kind.name,
                        run.kind.side,
                        run.kind.framework,
                        run.transform,
                        run.workers,
                        result,
                        run.kind.workers_used(run.workers),
                    )
                    rows.append(row)
                    print("   " + report.progress_line(row), file=sys.stderr, flush=True)
            finally:
                emulated.stop(etl)
                gc.collect()
    return rows


def _expect(transform: str) -> Callable[[bytes], bytes]:
    def expect(data: bytes) -> bytes:
        return transforms.expected(transform, data)

    return expect


def preset_name(args: argparse.Namespace) -> str:
    """Which preset ran (names the section of docs/performance.md)."""
    for name in ("full", "memory", "scaling"):
        if getattr(args, name):
            return name
    return "quick"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; write CSV, PNG (and the docs page)."""
    args = build_parser().parse_args(argv)
    if args.batching or args.waiting:
        from benchmarks import throughput

        return throughput.batching(args) if args.batching else throughput.waiting(args)
    ref_python = reference_python()
    runs = plan(args)
    if ref_python is None:
        print("no reference interpreter (AISETL_REFERENCE_PYTHON): reference servers skipped",
              file=sys.stderr)  # fmt: skip
        runs = [run for run in runs if run.kind.side != "ref"]
    if not runs:
        print("nothing to measure with these filters", file=sys.stderr)
        return 2
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    rows = measure(runs, args.objects, ref_python)
    elapsed = time.monotonic() - started
    text = report.render(rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = report.write_csv(rows, args.out / "latest.csv")
    png_path = report.write_chart(rows, args.out / "latest.png")
    print(f"\n{len(rows)} cells in {elapsed:.0f} s; wrote {csv_path}"
          + (f" and {png_path}" if png_path else ""), file=sys.stderr)  # fmt: skip
    if args.docs:
        section = args.section or preset_name(args)
        page = report.write_docs(rows, command.strip(), elapsed, Path("docs"), section)
        print(f"wrote {page}", file=sys.stderr)
    failed = [row for row in rows if not row.result.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
