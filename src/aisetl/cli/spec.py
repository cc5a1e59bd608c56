"""``aisetl spec``: write a new ``etl_spec.yaml`` or check one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aisetl import spec as specs
from aisetl.cli.errors import CommandError
from aisetl.cli.options import add_env, parse_env

EPILOG = """\
exit codes:
  0  the spec was written / is valid (warnings go to stderr)
  2  bad input: an invalid spec field (each is listed with the reason), a file that
     cannot be read or written
"""


def register(subparsers: Any) -> None:
    """Add the ``spec`` verb and its ``init`` and ``check`` actions."""
    parser = subparsers.add_parser(
        "spec",
        help="write or check etl_spec.yaml (the runtime spec for `ais etl init --spec`)",
        description="Write or check etl_spec.yaml, the runtime spec an AIStore cluster starts "
        "an ETL from.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init",
        help="write a new etl_spec.yaml",
        description="Write a new runtime spec. The ETL name is 6 to 32 characters: lower-case "
        "letters, digits and '-', starting and ending with a letter or digit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("name", metavar="NAME", help="ETL name, e.g. md5-etl")
    init.add_argument("--image", required=True, help="container image, e.g. me/md5:1")
    init.add_argument(
        "--comm",
        default="hpush",
        choices=sorted(specs.COMM_BY_NAME),
        help="communication type (default hpush; ws turns on direct put)",
    )
    init.add_argument(
        "--no-direct-put",
        action="store_true",
        help="set support_direct_put: false (not allowed with --comm ws)",
    )
    init.add_argument("--init-timeout", default="5m", help="Go duration (default 5m)")
    init.add_argument("--obj-timeout", default="45s", help="Go duration (default 45s)")
    add_env(init, "a runtime.env entry")
    init.add_argument(
        "-o",
        "--output",
        default="etl_spec.yaml",
        help="file to write (default etl_spec.yaml; - for stdout)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=run_init)

    check = actions.add_parser(
        "check",
        help="validate an etl_spec.yaml",
        description="Validate a runtime spec (every document of the file) the way an AIStore "
        "proxy and target would, with the stricter ETL name rule.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the spec file (YAML)")
    check.set_defaults(handler=run_check)


def run_init(args: argparse.Namespace) -> int:
    """Write a new spec file."""

    try:
        text = specs.render(
            args.name,
            args.image,
            comm=args.comm,
            support_direct_put=not args.no_direct_put,
            init_timeout=args.init_timeout,
            obj_timeout=args.obj_timeout,
            env=parse_env(args.env),
        )
    except specs.SpecError as exc:
        raise CommandError(str(exc)) from None
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.exists() and not args.force:
        raise CommandError(f"{out} already exists (use --force to overwrite)")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Validate a spec file and print one line per problem."""

    try:
        found = specs.load(args.file)
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except specs.SpecError as exc:
        for where, why in exc.problems:
            print(f"aisetl spec: error: {args.file}: {where}: {why}", file=sys.stderr)
        return 2
    for spec in found:
        for warning in spec.warnings:
            print(f"aisetl spec: warning: {args.file}: {warning}", file=sys.stderr)
        print(
            f"{args.file}: ok: {spec.name} ({spec.image}, {spec.communication}, "
            f"direct put {'on' if spec.support_direct_put else 'off'}, "
            f"init_timeout {spec.init_timeout:g}s, obj_timeout {spec.obj_timeout:g}s)"
        )
    return 0
