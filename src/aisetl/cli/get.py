"""``aisetl get``: an inline transform of one file, like ``ais etl object``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aisetl import comm as comms
from aisetl.cli.errors import CommandError
from aisetl.cli.options import add_env, add_server, add_spec, parse_env
from aisetl.spec import DEFAULT_INIT_TIMEOUT, DEFAULT_OBJ_TIMEOUT

EPILOG = """\
The server starts as a real process; an emulated target sends FILE to it over the chosen
communication type (a client's GET with etl_name, as `ais etl object` does) and the result
goes to OUT (default: standard output). An etl_spec.yaml beside the server's file supplies
the communication type, timeouts and environment (flags override it).

A binary result is not written to a terminal: pass -o OUT (or -o - to force it).

exit codes:
  0  the result was written
  1  the server answered an error or timed out (the message says which); nothing is written
  2  bad input: SERVER does not import or has no server class, FILE is missing or a
     folder, the server never became healthy, an invalid etl_spec.yaml field, a binary
     result for a terminal
"""

_BUCKET = "local"


def register(subparsers: Any) -> None:
    """Add the ``get`` verb."""
    parser = subparsers.add_parser(
        "get",
        help="transform one file through a server (inline, like `ais etl object`)",
        description="Transform FILE through SERVER and write the result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server(parser)
    parser.add_argument("file", metavar="FILE", help="the object to transform (a local file)")
    parser.add_argument("--args", default="", metavar="STR", help="etl_args for the request")
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="write the result here (default stdout)"
    )
    parser.add_argument(
        "--comm",
        choices=comms.NAMES,
        help="communication type (default: spec's or hpush)",
    )
    parser.add_argument(
        "--fqn", action="store_true", help="pass the file's path instead of its bytes"
    )
    add_spec(parser)
    add_env(parser)
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="seconds per attempt (default: spec's or 10)"
    )
    parser.set_defaults(handler=run)


def is_binary(data: bytes) -> bool:
    """Whether ``data`` would garble a terminal: a NUL byte, or not UTF-8 text."""
    if b"\x00" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def run(args: argparse.Namespace) -> int:
    """Transform one file and write the result."""
    from aisetl.cli.failures import Limit, explain_timeout
    from aisetl.cli.run import check_comm
    from aisetl.cli.stages import StageError, launch, load_stage, name_stages
    from aisetl.cli.watch import ServerWatch, settle
    from aisetl.target import Cluster
    from aisetl.target.store import write_atomic

    source = Path(args.file)
    if source.is_dir():
        raise CommandError(
            f"{args.file} is a folder; use aisetl run {args.server} --src {args.file} --dst OUT"
        )
    if not source.is_file():
        raise CommandError(f"{args.file}: no such file")
    if args.timeout is not None and args.timeout <= 0:
        raise CommandError("--timeout must be a positive number of seconds")
    out = Path(args.output) if args.output and args.output != "-" else None
    if out is not None:
        if out.is_dir():
            raise CommandError(f"-o {args.output} is a folder")
        if not out.resolve().parent.is_dir():
            raise CommandError(f"-o {args.output}: folder {out.resolve().parent} does not exist")
    env = parse_env(args.env)
    try:
        stage = load_stage(
            args.server,
            args.framework,
            spec_path=Path(args.spec) if args.spec else None,
            use_spec=not args.no_spec,
        )
    except StageError as exc:
        raise CommandError(str(exc)) from None
    name_stages([stage])
    spec = stage.spec
    comm = args.comm or (spec.comm if spec else "hpush")
    check_comm(comm, stage)
    timeout = args.timeout or (spec.obj_timeout if spec else DEFAULT_OBJ_TIMEOUT)
    limit = Limit("--timeout", timeout, given=args.timeout is not None, from_spec=spec is not None)
    with Cluster(obj_timeout=timeout, ws_timeout=timeout, record=0) as cluster:
        target = cluster.targets[0]
        target.attach_bucket(_BUCKET, source.resolve().parent)
        try:
            (etl,) = launch(
                cluster,
                [stage],
                comm=comm,
                init_timeout=spec.init_timeout if spec else DEFAULT_INIT_TIMEOUT,
                obj_timeout=timeout,
                extra_env=env,
            )
        except StageError as exc:
            raise CommandError(str(exc)) from None
        watch = ServerWatch([(stage.server, process) for process in etl.processes])
        result = target.transform(
            etl, _BUCKET, source.name, comm=comm, fqn=args.fqn, etl_args=args.args
        )
        death = settle(watch) if result.error is not None and result.status == 0 else None
        logs = etl.logs()
    if result.problem is not None:
        message = explain_timeout(result.problem, limit)
        print(f"aisetl get: {args.file}: {message}", file=sys.stderr)
        if death is not None:
            print(f"aisetl get: {death.message()}", file=sys.stderr)
            print(f"--- server log (tail) ---\n{death.log}", file=sys.stderr)
        elif (result.status >= 500 or result.lost) and logs:
            tail = "\n".join(logs.strip().splitlines()[-10:])
            print(f"--- server log (tail) ---\n{tail}", file=sys.stderr)
        return 1
    data = result.content or b""
    if out is None:
        if args.output != "-" and sys.stdout.isatty() and is_binary(data):
            raise CommandError(
                f"the result is binary ({len(data)} bytes) and standard output is a terminal: "
                "pass -o FILE, redirect it (> FILE), or -o - to print it anyway"
            )
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(out, data)
        print(f"wrote {out} ({len(data)} bytes)", file=sys.stderr)
    return 0
