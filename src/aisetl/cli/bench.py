"""``aisetl bench``: throughput, latency and memory of a transformer, as a target loads it."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisetl import comm as comms
from aisetl.batch import BatchStats
from aisetl.cli.errors import CommandError
from aisetl.cli.options import add_env, add_server, add_spec, parse_env

if TYPE_CHECKING:  # the emulator is imported when a benchmark starts
    from aisetl.target.load import CellResult

MODES = comms.LOAD_MODES

EPILOG = """\
modes:
  hpush   the target PUTs each object's bytes
  fqn     the target PUTs an empty body with etl_fqn: the server reads the file
  hpull   the target GETs from the server, which fetches the bytes from the target
  ws      pipelined tasks over up to 8 WebSocket connections (FastAPI servers)
  direct  hpush whose result the server PUTs to a second target (direct put)

Every answer is checked: with --echo it must equal the object; otherwise every answer for an
object must equal the first one (a transform must be deterministic). A server that defines
transform_batch also reports the batches it ran during each cell (count and sizes).

RSS is the server's resident memory (all its processes, Linux): "RSS A -> peak B (+C)" reads
A when the cell started, B the highest during that cell alone (the high-water mark is reset
for each cell) and C what the cell added. A process keeps memory it has freed, so a cell after
one with larger objects starts higher; compare the +C, or run one size per benchmark.

--plot FILE draws the results (throughput and peak RSS per mode, size and concurrency) as
a PNG; it needs matplotlib (pip install 'aisetl[bench]').

exit codes: 0 every cell answered correctly, 1 a cell had errors or wrong answers, 2 bad input
"""


def register(subparsers: Any) -> None:
    """Add the ``bench`` verb."""
    parser = subparsers.add_parser(
        "bench",
        help="measure a transformer's throughput, latency and memory under a target's load",
        description="Start SERVER on its real stack, send it objects as an AIStore target "
        "does, CONCURRENCY at a time for DURATION seconds per cell, and report objects/s, "
        "MiB/s, p50/p99 latency, /health latency and peak RSS for every mode, size and "
        "concurrency asked for.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server(parser)
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    parser.add_argument(
        "--comm",
        nargs="+",
        choices=MODES,
        metavar="MODE",
        help=f"modes to measure: {', '.join(MODES)} (default: hpush)",
    )
    parser.add_argument(
        "--size",
        nargs="+",
        default=["1KiB", "1MiB"],
        metavar="SIZE",
        help="object sizes, e.g. 1KiB 64KiB 1MiB (default: 1KiB 1MiB)",
    )
    parser.add_argument(
        "--concurrency",
        nargs="+",
        type=int,
        default=[16],
        metavar="N",
        help="requests in flight (default: 16)",
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, metavar="S", help="seconds per cell (default 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, metavar="S", help="seconds before measuring"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="send these files (each at its own size) instead of random objects",
    )
    parser.add_argument("--echo", action="store_true", help="answers must equal the objects")
    add_env(parser)
    parser.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    parser.add_argument("--plot", metavar="FILE", help="also draw the results as a PNG chart")
    parser.add_argument(
        "--metrics", action="store_true", help="show the server's own metrics at the end"
    )
    add_spec(parser, choose=False)
    parser.set_defaults(handler=run)


def _sizes(values: list[str]) -> list[int]:
    from aisetl.config import ConfigError, parse_size

    sizes = []
    for value in values:
        try:
            size = parse_size("--size", value)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        sizes.append(size)
    return sizes


def _data(folder: str) -> list[bytes]:

    root = Path(folder)
    if not root.is_dir():
        raise CommandError(f"--data {folder}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())[:256]
    if not files:
        raise CommandError(f"--data {folder} has no files")
    return [p.read_bytes() for p in files]


def line(result: CellResult) -> str:
    """One cell, for people."""
    from aisetl.cli.progress import human_bytes

    cell = result.cell
    size = human_bytes(cell.size) if cell.size else "files"
    status = (
        "ok"
        if result.ok
        else f"FAILED: {result.failed} errors, {result.mismatched} wrong answers"
        + (f" ({result.first_error})" if result.first_error else "")
    )
    return (
        f"{cell.mode:6} {size:>9} c{cell.concurrency:<3} "
        f"{result.objects_per_s:9.1f} obj/s {result.mib_per_s:9.1f} MiB/s  "
        f"p50 {result.p50 * 1000:7.2f} ms  p99 {result.p99 * 1000:7.2f} ms  "
        f"/health p99 {result.health_p99 * 1000:6.1f} ms  "
        f"RSS {human_bytes(result.rss_idle):>9} -> peak {human_bytes(result.rss_peak):>9} "
        f"(+{human_bytes(max(result.rss_peak - result.rss_idle, 0))})  {status}"
    )


def batch_sizes(folder: Path) -> dict[int, int]:
    """Batch size -> batches, summed over the workers' files (``AISETL_BATCH_STATS``)."""
    sizes: dict[int, int] = {}
    for file in folder.glob("*.json"):
        try:
            counts = json.loads(file.read_text())["sizes"]
        except (OSError, ValueError, KeyError):
            continue
        for size, count in counts.items():
            sizes[int(size)] = sizes.get(int(size), 0) + int(count)
    return sizes


def batches_between(before: dict[int, int], folder: Path) -> dict[int, int]:
    """The batches run since ``before`` (the workers write their counts within 0.2 s)."""
    time.sleep(BatchStats.flush_interval * 2)
    after = batch_sizes(folder)
    return {s: n - before.get(s, 0) for s, n in after.items() if n > before.get(s, 0)}


def batch_summary(sizes: dict[int, int]) -> str:
    """``batches: 412, mean size 31.2 (1-32), most often 32``."""
    batches = sum(sizes.values())
    objects = sum(size * count for size, count in sizes.items())
    common = max(sizes, key=lambda size: sizes[size])
    return (
        f"batches: {batches}, mean size {objects / batches:.1f} "
        f"({min(sizes)}-{max(sizes)}), most often {common}"
    )


def write_csv(path: Path, results: list[CellResult]) -> None:
    """The results, one line per cell."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "mode", "size", "concurrency", "seconds", "objects", "objects_per_s",
                "mib_per_s", "p50_ms", "p99_ms", "health_p99_ms", "rss_idle", "rss_peak",
                "failed", "mismatched", "ok",
            ]
        )  # fmt: skip
        for r in results:
            c = r.cell
            writer.writerow(
                [
                    c.mode, c.size, c.concurrency, f"{r.seconds:.3f}", r.count,
                    f"{r.objects_per_s:.2f}", f"{r.mib_per_s:.2f}", f"{r.p50 * 1000:.3f}",
                    f"{r.p99 * 1000:.3f}", f"{r.health_p99 * 1000:.3f}", r.rss_idle,
                    r.rss_peak, r.failed, r.mismatched, r.ok,
                ]
            )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """The ``bench`` verb."""
    from aisetl.cli.stages import StageError, launch, load_stage, name_stages
    from aisetl.target import Cluster
    from aisetl.target.load import Cell, LoadGenerator, ProcessMemory, temp_root

    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if any(c < 1 for c in args.concurrency):
        raise CommandError("--concurrency must be at least 1")
    if args.duration <= 0 or args.warmup < 0:
        raise CommandError("--duration must be positive and --warmup not negative")
    sizes = _sizes(args.size)
    if args.plot:
        from aisetl.cli.plot import pyplot

        pyplot()  # fail before the benchmark when matplotlib is missing
        if not Path(args.plot).resolve().parent.is_dir():
            raise CommandError(f"--plot {args.plot}: folder does not exist")
    env = parse_env(args.env)
    data = _data(args.data) if args.data else None
    try:
        stage = load_stage(args.server, args.framework, use_spec=not args.no_spec)
    except StageError as exc:
        raise CommandError(str(exc)) from None
    name_stages([stage])
    modes = args.comm or ["hpush"]
    from aisetl.cli.run import check_comm

    for mode in modes:
        if comms.by_name(mode) is not None:
            check_comm(mode, stage)
    if data is not None:
        sizes = [0]
    cells = [
        Cell(mode, size, concurrency, args.duration, args.warmup)
        for size in sizes
        for mode in modes
        for concurrency in args.concurrency
    ]
    print(
        f"aisetl bench: {stage.server} ({stage.framework}, {args.workers} worker(s)): "
        f"{len(cells)} cell(s) of {args.warmup:g}+{args.duration:g} s",
        file=sys.stderr,
        flush=True,
    )
    results: list[CellResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="aisetl-batches-") as stats,
        tempfile.TemporaryDirectory(prefix="aisetl-bench-", dir=temp_root()) as root,
        Cluster(root, targets=2, use_uvloop=True, record=0, obj_timeout=60) as cluster,
    ):
        try:
            (etl,) = launch(
                cluster,
                [stage],
                comm="hpush",
                workers=args.workers,
                init_timeout=stage.spec.init_timeout if stage.spec else 60.0,
                obj_timeout=60.0,
                extra_env={"AISETL_BATCH_STATS": stats, **env},
            )
        except StageError as exc:
            raise CommandError(str(exc)) from None
        generator = cluster.call(lambda: LoadGenerator(cluster.core, obj_timeout=60.0))
        memory = ProcessMemory(etl.processes[0].pid)
        expect = (lambda data: data) if args.echo else None
        cluster.call(functools.partial(generator.use, etl, expect=expect, memory=memory))
        for size in sizes:
            generator.prepare(size, 16, data)
            for cell in (c for c in cells if c.size == size):
                before = batch_sizes(Path(stats))
                result = cluster.run(generator.run(cell))
                results.append(result)
                print(line(result), flush=True)
                seen = batches_between(before, Path(stats))
                if seen:
                    print(f"       {batch_summary(seen)}", flush=True)
            generator.drop(size)
        if args.metrics:
            from aisetl.cli.server_metrics import summary as metrics_summary

            print(metrics_summary(etl.name, etl.url()), flush=True)
    if args.csv:
        write_csv(Path(args.csv), results)
    if args.plot:
        from aisetl.cli.plot import write_chart

        server = stage.server.rsplit("/", 1)[-1]
        title = f"aisetl bench {server} ({stage.framework}, {args.workers} worker(s))"
        write_chart(results, Path(args.plot), title)
        print(f"chart: {args.plot}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1
