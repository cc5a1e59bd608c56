"""``aisetl run``: an offline bucket-to-bucket transform of local folders, as AIStore runs it."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisetl import comm as comms
from aisetl.cli import server_metrics
from aisetl.cli.errors import CommandError
from aisetl.cli.options import add_env, add_server, add_spec, parse_env
from aisetl.loader import LoadError, framework_class
from aisetl.spec import DEFAULT_INIT_TIMEOUT, DEFAULT_OBJ_TIMEOUT

if TYPE_CHECKING:  # the emulator is imported when a run starts, not for every command
    from aisetl.cli.stages import Stage
    from aisetl.target import JobReport

EPILOG = """\
SERVER is path/to/server.py[:CLASS] or MODULE:CLASS. An etl_spec.yaml beside the server's
file supplies the communication type, timeouts and environment (flags override it).

Every object of --src goes through the server (or the --then pipeline) over the chosen
communication type, as a real AIStore target sends it; results are written to --dst
atomically (never a partial file). --src is never modified. Re-run with --skip-existing
to resume an interrupted run.

exit codes:
  0    every object was transformed
  1    at least one object failed (each is listed in the summary and in --report)
  2    bad input: SERVER does not import or has no server class, --src missing or
       empty, --dst inside --src, a port in use, a server that never became healthy,
       an invalid etl_spec.yaml field
  130  interrupted (Ctrl-C); what was written to --dst is complete
"""

_BUCKET_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
#: Errors listed in the summary (all of them go to --report).
SUMMARY_ERRORS = 10


@dataclass
class RunPlan:
    """Everything a run needs, validated."""

    stages: list[Stage]
    src: Path
    dst: Path
    total: int
    comm: str
    fqn: bool
    direct_put: bool
    etl_args: str
    ext: dict[str, str]
    prefix: str
    workers: int | None
    concurrency: int
    skip_existing: bool
    report: Path | None
    port: int | None
    init_timeout: float
    obj_timeout: float
    env: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    metrics: bool = False


def register(subparsers: Any) -> None:
    """Add the ``run`` verb."""
    parser = subparsers.add_parser(
        "run",
        help="transform a local folder into another through a server, as an AIStore job",
        description="Transform every file of --src into --dst through SERVER: the server "
        "starts as a real process on its real stack and an emulated AIStore target drives "
        "each object through it (an offline bucket-to-bucket job).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server(parser)
    parser.add_argument("--src", required=True, metavar="DIR", help="source folder (read only)")
    parser.add_argument("--dst", required=True, metavar="DIR", help="destination folder")
    parser.add_argument(
        "--comm",
        choices=comms.NAMES,
        help="communication type (default: the spec's, else hpush)",
    )
    parser.add_argument(
        "--fqn", action="store_true", help="pass each object's file path instead of its bytes"
    )
    parser.add_argument(
        "--direct-put",
        action="store_true",
        help="make the destination live on a second target, so the server delivers each "
        "result there by direct put",
    )
    parser.add_argument(
        "--then",
        action="extend",
        nargs="+",
        default=[],
        metavar="SERVER",
        help="more servers, forming a pipeline (each result is put to the next stage)",
    )
    parser.add_argument("--args", default="", metavar="STR", help="etl_args sent with every object")
    parser.add_argument(
        "--ext",
        action="append",
        default=[],
        metavar="FROM:TO",
        help="rename extensions in --dst, e.g. flac:wav (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--prefix", default="", metavar="P", help="only objects whose name starts with P"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="server worker processes (default: NUM_WORKERS or 1)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="objects in flight (default 16)"
    )
    parser.add_argument(
        "--skip-existing", action="store_true", help="skip objects whose result already exists"
    )
    parser.add_argument(
        "--report", metavar="FILE", help="write a JSON report (every failed object)"
    )
    parser.add_argument("--port", type=int, help="port of the (first) server (default: a free one)")
    add_spec(parser)
    add_env(parser)
    parser.add_argument(
        "--init-timeout", type=float, metavar="S", help="seconds to wait for /health"
    )
    parser.add_argument(
        "--obj-timeout",
        type=float,
        metavar="S",
        help="seconds per object attempt (the target's, and the server's AISETL_OBJ_TIMEOUT)",
    )
    parser.add_argument(
        "--metrics", action="store_true", help="show the server's own metrics at the end"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only the summary")
    parser.set_defaults(handler=run)


def _ext_map(values: list[str]) -> dict[str, str]:

    mapping: dict[str, str] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            old, sep, new = item.partition(":")
            old, new = old.strip().lstrip("."), new.strip().lstrip(".")
            if not sep or not old or not new or "/" in old + new:
                raise CommandError(f"--ext {item!r}: write FROM:TO, e.g. flac:wav")
            mapping[old] = new
    return mapping


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_folders(src_arg: str, dst_arg: str, prefix: str) -> tuple[Path, Path, int]:
    """Resolve --src and --dst, refuse overlaps; return them and the number of objects."""
    from aisetl.target import Bucket

    src = Path(src_arg)
    if not src.exists():
        raise CommandError(f"--src {src_arg}: no such folder")
    if not src.is_dir():
        raise CommandError(f"--src {src_arg} is not a folder")
    src = src.resolve()
    dst = Path(dst_arg).resolve()
    if _inside(dst, src):
        raise CommandError(
            f"--dst {dst_arg} is inside --src {src_arg}: results would become source objects"
        )
    if _inside(src, dst):
        raise CommandError(f"--src {src_arg} is inside --dst {dst_arg}: results could overwrite it")
    if dst.exists() and not dst.is_dir():
        raise CommandError(f"--dst {dst_arg} exists and is not a folder")
    total = sum(1 for _ in Bucket("src", src).iter_names(prefix))
    if total == 0:
        if prefix:
            raise CommandError(f"--src {src_arg} has no objects whose name starts with {prefix!r}")
        raise CommandError(f"--src {src_arg} is empty")
    return src, dst, total


def plan(args: argparse.Namespace) -> RunPlan:
    """Check every argument and load every server; raise :class:`CommandError`."""
    from aisetl.cli.stages import StageError, check_port, load_stage, name_stages

    for flag, value in (("--workers", args.workers), ("--concurrency", args.concurrency)):
        if value is not None and value < 1:
            raise CommandError(f"{flag} must be at least 1")
    for flag, value in (("--init-timeout", args.init_timeout), ("--obj-timeout", args.obj_timeout)):
        if value is not None and value <= 0:
            raise CommandError(f"{flag} must be a positive number of seconds")
    ext = _ext_map(args.ext)
    env = parse_env(args.env)
    if args.obj_timeout:  # the server gives up when the target does (unless --env says)
        env.setdefault("AISETL_OBJ_TIMEOUT", f"{args.obj_timeout:g}")
    src, dst, total = check_folders(args.src, args.dst, args.prefix)
    if args.port is not None:
        try:
            check_port(args.port)
        except StageError as exc:
            raise CommandError(str(exc)) from None
    try:
        first = load_stage(
            args.server,
            args.framework,
            spec_path=Path(args.spec) if args.spec else None,
            use_spec=not args.no_spec,
        )
        stages = [first] + [
            load_stage(server, None, use_spec=not args.no_spec) for server in args.then
        ]
    except StageError as exc:
        raise CommandError(str(exc)) from None
    name_stages(stages)
    spec = first.spec
    comm = args.comm or (spec.comm if spec else "hpush")
    check_comm(comm, first)
    if args.report:
        report_dir = Path(args.report).resolve().parent
        if not report_dir.is_dir():
            raise CommandError(f"--report {args.report}: folder {report_dir} does not exist")
    return RunPlan(
        stages=stages,
        src=src,
        dst=dst,
        total=total,
        comm=comm,
        fqn=args.fqn,
        direct_put=args.direct_put,
        etl_args=args.args,
        ext=ext,
        prefix=args.prefix,
        workers=args.workers,
        concurrency=args.concurrency,
        skip_existing=args.skip_existing,
        report=Path(args.report) if args.report else None,
        port=args.port,
        init_timeout=args.init_timeout or (spec.init_timeout if spec else DEFAULT_INIT_TIMEOUT),
        obj_timeout=args.obj_timeout or (spec.obj_timeout if spec else DEFAULT_OBJ_TIMEOUT),
        env=env,
        quiet=args.quiet,
        metrics=args.metrics,
    )


def check_comm(comm: str, stage: Stage) -> None:
    """Refuse a communication type the stage's server class cannot serve."""
    try:
        server_cls = framework_class(stage.framework)
    except LoadError as exc:
        raise CommandError(str(exc)) from None
    reason = comms.unsupported_reason(comm, server_cls, f"{stage.server} (on {stage.framework})")
    if reason is not None:
        raise CommandError(f"--comm {comm}: {reason}")


def bucket_name(folder: Path, fallback: str) -> str:
    """A valid bucket name from a folder's name."""
    name = _BUCKET_CHARS.sub("-", folder.name).strip("-.")[:64].replace("..", "-")
    return name or fallback


def _relative(obj_name: str, src_bucket: str) -> str:
    prefix = f"ais://{src_bucket}/"
    return obj_name[len(prefix) :] if obj_name.startswith(prefix) else obj_name


def report_dict(plan: RunPlan, report: JobReport, src_bucket: str) -> dict[str, Any]:
    """The JSON report: settings, counts, and every failed object with its reason."""
    return {
        "job_id": report.job_id,
        "servers": [stage.server for stage in plan.stages],
        "src": str(plan.src),
        "dst": str(plan.dst),
        "comm": plan.comm,
        "fqn": plan.fqn,
        "direct_put": plan.direct_put,
        "etl_args": plan.etl_args,
        "ok": report.ok,
        "total": report.total,
        "stored": report.stored,
        "delivered": report.delivered,
        "skipped": report.skipped,
        "failed": report.failed,
        "lost": report.lost,
        "bytes_in": report.bytes_in,
        "bytes_out": report.bytes_out,
        "duration_s": round(report.duration, 3),
        "aborted": report.aborted,
        "abort_reason": report.abort_reason,
        "errors": [
            {
                "object": _relative(error.obj_name, src_bucket),
                "status": error.ecode,
                "reason": error.msg,
            }
            for error in report.errors
        ],
        "ws_errors": list(report.ws_errors),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically."""
    folder = path.resolve().parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".~aisetl-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary(plan: RunPlan, report: JobReport, src_bucket: str) -> str:
    """The lines printed when the job ends."""
    from aisetl.cli.progress import human_bytes, human_seconds

    rate = report.done / report.duration if report.duration > 0 else 0.0
    head = "done" if report.ok else "FAILED"
    lines = [
        f"{head}: {report.done}/{report.total} objects in {human_seconds(report.duration)} "
        f"({rate:.1f} obj/s): {report.stored + report.delivered} written"
        + (f" ({report.delivered} by direct put)" if report.delivered else "")
        + f", {report.skipped} skipped, {report.failed} failed; "
        f"{human_bytes(report.bytes_in)} in, {human_bytes(report.bytes_out)} out -> {plan.dst}"
    ]
    if report.aborted and report.abort_reason:
        lines.append(f"job aborted: {report.abort_reason}")
    for error in report.errors[:SUMMARY_ERRORS]:
        lines.append(f"  {_relative(error.obj_name, src_bucket)}: {error.msg}")
    if report.failed > SUMMARY_ERRORS:
        more = report.failed - SUMMARY_ERRORS
        where = f"see {plan.report}" if plan.report else "use --report FILE for the full list"
        lines.append(f"  ... and {more} more ({where})")
    return "\n".join(lines)


def _short(path: Path) -> str:
    """``path`` relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _header(plan: RunPlan) -> str:
    first = plan.stages[0]
    chain = " -> ".join(f"{s.server} ({s.framework})" for s in plan.stages)
    mode = "FQN" if plan.fqn else "bytes"
    extra = ", direct put" if plan.direct_put else ""
    spec = f", spec {_short(first.spec_path)}" if first.spec_path else ""
    return (
        f"aisetl run: {chain}: {plan.total} objects, {plan.comm}, {mode}{extra}{spec}\n"
        f"  {plan.src} -> {plan.dst}"
    )


def execute(plan: RunPlan) -> int:
    """Start the servers and the emulated target, run the job, report; return the exit code."""
    from aisetl.cli.progress import make_display
    from aisetl.cli.stages import StageError, launch
    from aisetl.target import Cluster, JobSpec, rename_with, run_job

    src_bucket = bucket_name(plan.src, "src")
    dst_bucket = bucket_name(plan.dst, "dst")
    if dst_bucket == src_bucket:
        dst_bucket = (dst_bucket[:60] + "-dst").strip("-")
    print(_header(plan), file=sys.stderr, flush=True)
    lost = comms.lost_failure_warning(plan.comm)
    if lost is not None:
        print(f"aisetl run: warning: {lost}", file=sys.stderr, flush=True)
    targets = 2 if plan.direct_put else 1
    with Cluster(
        targets=targets,
        placement="remote" if plan.direct_put else "local",
        obj_timeout=plan.obj_timeout,
        record=0,
        ws_timeout=max(plan.obj_timeout * 6, 60.0),
    ) as cluster:
        cluster.targets[0].attach_bucket(src_bucket, plan.src)
        started = time.monotonic()
        try:
            etls = launch(
                cluster,
                plan.stages,
                comm=plan.comm,
                workers=plan.workers,
                port=plan.port,
                init_timeout=plan.init_timeout,
                obj_timeout=plan.obj_timeout,
                extra_env=plan.env,
            )
        except StageError as exc:
            raise CommandError(str(exc)) from None
        plan.dst.mkdir(parents=True, exist_ok=True)
        for target in cluster.targets:
            target.attach_bucket(dst_bucket, plan.dst)
        print(f"  servers ready in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        display = make_display(quiet=plan.quiet)
        spec = JobSpec(
            etl=etls[0],
            src=src_bucket,
            dst=dst_bucket,
            prefix=plan.prefix,
            rename=rename_with(plan.ext) if plan.ext else None,
            pipeline=etls[1:],
            comm=plan.comm,
            fqn=plan.fqn,
            workers=plan.concurrency,
            continue_on_error=True,
            skip_existing=plan.skip_existing,
            progress=display.update if display else None,
            progress_interval=0.1,
            max_errors=max(plan.total, 1),
            etl_args=plan.etl_args,
        )
        if display:
            display.start(plan.total)
        try:
            report = cluster.run(run_job(cluster.core, spec))
        except KeyboardInterrupt:
            if display:
                display.stop()
            print(
                "\ninterrupted: every file in --dst is complete; run again with "
                "--skip-existing to resume",
                file=sys.stderr,
            )
            raise
        if display:
            display.stop()
        served = (
            [server_metrics.summary(etl.name, etl.url()) for etl in etls] if plan.metrics else []
        )
    check_results(plan, report, src_bucket)
    print(summary(plan, report, src_bucket))
    for text in served:
        print(text)
    if plan.report:
        write_json(plan.report, report_dict(plan, report, src_bucket))
    return 0 if report.ok else 1


MSG_MISSING = (
    "no result at the destination: the server answered with a text message, which a target "
    "takes as delivered (ws has no error channel; see the server log)"
)


def check_results(plan: RunPlan, report: JobReport, src_bucket: str) -> None:
    """Count objects the target took as delivered but whose result is not in --dst as failed.

    Over ws a server's failure reaches the target as a text message, which means "delivered
    by direct put" (PROTOCOL.md §7.4): the job cannot see it, the destination can.
    """
    from aisetl.target import Bucket, ObjError, rename_with

    if report.aborted or report.delivered == 0:
        return
    rename = rename_with(plan.ext) if plan.ext else (lambda name: name)
    failed = {_relative(error.obj_name, src_bucket) for error in report.errors}
    dst = Bucket("dst", plan.dst)
    for name in Bucket("src", plan.src).iter_names(plan.prefix):
        if name in failed or dst.exists(rename(name)):
            continue
        report.errors.append(ObjError(f"ais://{src_bucket}/{name}", MSG_MISSING))
        report.failed += 1
        report.delivered -= 1


def run(args: argparse.Namespace) -> int:
    """The ``run`` verb."""
    return execute(plan(args))
