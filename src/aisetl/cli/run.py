"""``aisetl run``: an offline bucket-to-bucket transform of local folders, as AIStore runs it."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisetl import comm as comms
from aisetl.cli.errors import CommandError
from aisetl.cli.names import check_collisions, ext_map, renamer
from aisetl.cli.options import add_env, add_server, add_spec, parse_env
from aisetl.cli.results import RunResult, finish, report_dict, summary, write_json
from aisetl.loader import LoadError, framework_class
from aisetl.spec import DEFAULT_INIT_TIMEOUT, DEFAULT_OBJ_TIMEOUT

if TYPE_CHECKING:  # the emulator is imported when a run starts, not for every command
    from aisetl.cli.failures import Limit
    from aisetl.cli.stages import Stage
    from aisetl.cli.watch import Death
    from aisetl.target import ETL, Cluster

EPILOG = """\
SERVER is path/to/server.py[:CLASS] or MODULE:CLASS. An etl_spec.yaml beside the server's
file supplies the communication type, timeouts and environment (flags override it).

Every object of --src goes through the server (or the --then pipeline) over the chosen
communication type, as a real AIStore target sends it; results are written to --dst
atomically (never a partial file). --src is never modified. Re-run with --skip-existing
to resume an interrupted run.

Identical errors are grouped, each with the last lines of the traceback the server logged
for it. A server that dies during the run stops it at once, named with its exit code (or
signal) and the end of its log; --log DIR keeps every server's log.

--ext FROM:TO renames extensions in --dst (flac:wav); '*:TO' renames every extension and
gives names without one .TO. Two objects that would get the same name in --dst are refused
before the run starts.

The first Ctrl-C lets the objects in flight finish, the second abandons them; either way
the summary and --report say what was done.

exit codes:
  0    every object was transformed
  1    at least one object failed (each is listed in the summary and in --report), or a
       server died during the run
  2    bad input: SERVER does not import or has no server class, --src missing or
       empty, --dst inside --src, destination names that collide, a port in use, a
       server that never became healthy, an invalid etl_spec.yaml field
  130  interrupted (Ctrl-C); what was written to --dst is complete
"""

_BUCKET_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
#: Seconds the servers get to stop after one of them died.
STOP_GRACE = 1.0


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
    obj_limit: Limit
    env: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    log_dir: Path | None = None

    def rename(self, name: str) -> str:
        """The name of object ``name``'s result in --dst."""
        return renamer(self.ext)(name) if self.ext else name

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
        help="seconds per object attempt, ws tasks included, and the server's own "
        "AISETL_OBJ_TIMEOUT (default: spec's or 10)",
    )
    parser.add_argument(
        "--log", metavar="DIR", help="keep each server's log in DIR (created if missing)"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="show the server's own metrics at the end"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only the summary")
    parser.set_defaults(handler=run)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_folders(src_arg: str, dst_arg: str, prefix: str) -> tuple[Path, Path, list[str]]:
    """Resolve --src and --dst, refuse overlaps; return them and the object names."""
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
    names = list(Bucket("src", src).iter_names(prefix))
    if not names:
        if prefix:
            raise CommandError(f"--src {src_arg} has no objects whose name starts with {prefix!r}")
        raise CommandError(f"--src {src_arg} is empty")
    return src, dst, names


def plan(args: argparse.Namespace) -> RunPlan:
    """Check every argument and load every server; raise :class:`CommandError`."""
    from aisetl.cli.failures import Limit
    from aisetl.cli.stages import StageError, check_port, load_stage, name_stages

    for flag, value in (("--workers", args.workers), ("--concurrency", args.concurrency)):
        if value is not None and value < 1:
            raise CommandError(f"{flag} must be at least 1")
    for flag, value in (("--init-timeout", args.init_timeout), ("--obj-timeout", args.obj_timeout)):
        if value is not None and value <= 0:
            raise CommandError(f"{flag} must be a positive number of seconds")
    ext = ext_map(args.ext)
    env = parse_env(args.env)
    if args.obj_timeout:  # the server gives up when the target does (unless --env says)
        env.setdefault("AISETL_OBJ_TIMEOUT", f"{args.obj_timeout:g}")
    src, dst, names = check_folders(args.src, args.dst, args.prefix)
    if ext:
        check_collisions(
            names, renamer(ext), "--ext " + ",".join(f"{a}:{b}" for a, b in ext.items())
        )
    log_dir = Path(args.log) if args.log else None
    if log_dir is not None and log_dir.exists() and not log_dir.is_dir():
        raise CommandError(f"--log {args.log} exists and is not a folder")
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
    obj_timeout = args.obj_timeout or (spec.obj_timeout if spec else DEFAULT_OBJ_TIMEOUT)
    return RunPlan(
        stages=stages,
        src=src,
        dst=dst,
        total=len(names),
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
        obj_timeout=obj_timeout,
        obj_limit=Limit(
            "--obj-timeout",
            obj_timeout,
            given=args.obj_timeout is not None,
            from_spec=spec is not None,
        ),
        env=env,
        quiet=args.quiet,
        log_dir=log_dir,
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


def stage_label(plan: RunPlan, index: int) -> str:
    """How messages name stage ``index``: its server, and its place in a pipeline."""
    stage = plan.stages[index]
    if len(plan.stages) == 1:
        return stage.server
    return f"{stage.server} (stage {index + 1} of {len(plan.stages)})"


def keep_logs(plan: RunPlan, cluster: Cluster, etls: list[ETL]) -> dict[str, Path]:
    """Copy every server's log into ``--log DIR`` (``<etl name>.log``); return them by name."""
    if plan.log_dir is None:
        return {}
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    kept: dict[str, Path] = {}
    started = {etl.name: etl for etl in etls}
    for stage in plan.stages:
        etl = started.get(stage.name)
        paths = [p.log_path for p in etl.processes] if etl else []
        paths = paths or sorted((cluster.core.root / "logs").glob(f"{stage.name}-*.log"))
        for index, path in enumerate(paths):
            name = stage.name + (f"-{index}" if index else "")
            dst = plan.log_dir / f"{name}.log"
            try:
                shutil.copyfile(path, dst)
            except OSError as exc:
                print(f"aisetl run: cannot keep {path} in {dst}: {exc}", file=sys.stderr)
                continue
            kept[name] = dst
    return kept


def _print_death(death: Death) -> None:
    print(f"\naisetl run: {death.message()}; stopping the run", file=sys.stderr, flush=True)
    if death.log:
        print(f"--- server log (tail) ---\n{death.log}\n---", file=sys.stderr, flush=True)


def _print_interrupt() -> None:
    print(
        "\ninterrupted: letting the objects in flight finish (Ctrl-C again to abandon them)",
        file=sys.stderr,
        flush=True,
    )


def execute(plan: RunPlan) -> int:
    """Start the servers and the emulated target, run the job, report; return the exit code."""
    from aisetl.cli.job import JobControl
    from aisetl.cli.progress import make_display
    from aisetl.cli.stages import StageError, launch
    from aisetl.cli.watch import ServerWatch
    from aisetl.target import Cluster, JobSpec

    src_bucket = bucket_name(plan.src, "src")
    dst_bucket = bucket_name(plan.dst, "dst")
    if dst_bucket == src_bucket:
        dst_bucket = (dst_bucket[:60] + "-dst").strip("-")
    print(_header(plan), file=sys.stderr, flush=True)
    served: list[str] = []
    lost = comms.lost_failure_warning(plan.comm)
    if lost is not None:
        print(f"aisetl run: warning: {lost}", file=sys.stderr, flush=True)
    targets = 2 if plan.direct_put else 1
    etls: list[ETL] = []
    with Cluster(
        targets=targets,
        placement="remote" if plan.direct_put else "local",
        obj_timeout=plan.obj_timeout,
        record=0,
        ws_timeout=plan.obj_timeout,  # --obj-timeout bounds ws tasks too
    ) as cluster:
        try:
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
            except KeyboardInterrupt:
                return _interrupted_at_start(plan, src_bucket, dst_bucket)
            plan.dst.mkdir(parents=True, exist_ok=True)
            for target in cluster.targets:
                target.attach_bucket(dst_bucket, plan.dst)
            print(
                f"  servers ready in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            display = make_display(quiet=plan.quiet)
            spec = JobSpec(
                etl=etls[0],
                src=src_bucket,
                dst=dst_bucket,
                prefix=plan.prefix,
                rename=plan.rename if plan.ext else None,
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
            watch = ServerWatch(
                [
                    (stage_label(plan, index), process)
                    for index, etl in enumerate(etls)
                    for process in etl.processes
                ]
            )

            def on_death(death: Death) -> None:
                if display:
                    display.stop()
                _print_death(death)

            if display:
                display.start(plan.total)
            control = JobControl(
                cluster, spec, watch, on_death=on_death, on_interrupt=_print_interrupt
            )
            try:
                outcome = control.run()
            finally:
                if display:
                    display.stop()
            logs = [process.log() for etl in etls for process in etl.processes]
            if plan.metrics and outcome.death is None:  # scraped while the servers still run
                from aisetl.cli.server_metrics import summary as metrics_summary

                served = [metrics_summary(etl.name, etl.url()) for etl in etls]
            if outcome.death is not None:  # the run is over: do not wait on the other servers
                for etl in etls:
                    for process in etl.processes:
                        process.stop(grace=STOP_GRACE)
        finally:
            kept = keep_logs(plan, cluster, etls)
    result = RunResult(outcome, src_bucket, logs=kept)
    finish(plan, result, logs)
    print(summary(plan, result))
    for text in served:
        print(text)
    if plan.report:
        write_json(plan.report, report_dict(plan, result))
    if outcome.interrupted:
        print(
            "interrupted: every file in --dst is complete; run again with "
            "--skip-existing to resume",
            file=sys.stderr,
        )
        return 130
    return 0 if outcome.report.ok else 1


def _interrupted_at_start(plan: RunPlan, src_bucket: str, dst_bucket: str) -> int:
    """Ctrl-C while the servers start: nothing was sent; say so, in --report too."""
    from aisetl.cli.job import MSG_INTERRUPTED, Outcome
    from aisetl.target import JobReport

    report = JobReport("", plan.stages[0].name, src_bucket, dst_bucket, total=plan.total)
    report.aborted, report.abort_reason = True, f"{MSG_INTERRUPTED} before the servers were ready"
    if plan.report:
        write_json(plan.report, report_dict(plan, RunResult(Outcome(report, True), src_bucket)))
    print("\ninterrupted before the servers were ready: nothing was sent", file=sys.stderr)
    return 130


def run(args: argparse.Namespace) -> int:
    """The ``run`` verb."""
    return execute(plan(args))
