"""``aisetl spec``: write a new ``etl_spec.yaml`` or check one."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from aisetl import deploy
from aisetl import spec as specs
from aisetl.cli.errors import CommandError
from aisetl.cli.new import etl_name_for
from aisetl.cli.options import SERVER_HELP, add_env, parse_env
from aisetl.loader import LoadError, load_server_class

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
        usage="%(prog)s NAME --image IMAGE [options]\n"
        "       %(prog)s SERVER --runtime IMAGE [--name NAME] [--package REQ] [options]",
        description="Write a new runtime spec: for your own image (NAME --image IMAGE), or "
        "for the aisetl runtime image with SERVER's class in it (SERVER --runtime IMAGE), as "
        "aisetl.deploy.init_class sends it. The ETL name is 6 to 32 characters: lower-case "
        "letters, digits and '-', starting and ending with a letter or digit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument(
        "name", metavar="NAME|SERVER", help=f"ETL name (e.g. md5-etl); with --runtime {SERVER_HELP}"
    )
    images = init.add_mutually_exclusive_group(required=True)
    images.add_argument("--image", help="your container image, e.g. me/md5:1")
    images.add_argument(
        "--runtime",
        metavar="IMAGE",
        help="the aisetl runtime image (e.g. me/aisetl-runtime:{python}); SERVER's class is "
        "pickled into ETL_CLASS_PAYLOAD",
    )
    init.add_argument("--name", dest="etl_name", help="with --runtime: the ETL name")
    init.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="REQ",
        help="with --runtime: a pip requirement to install first (repeatable)",
    )
    init.add_argument(
        "--os-package",
        action="append",
        default=[],
        metavar="PKG",
        help="with --runtime: a system package to install (apk/apt-get; repeatable)",
    )
    init.add_argument(
        "--direct-fqn",
        action="store_true",
        help="with --runtime: transform() gets the object's file path (ETL_DIRECT_FQN=true)",
    )
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


def name_for_class(class_name: str) -> str:
    """An ETL name from a class name (``WordUpperServer`` -> ``word-upper``)."""
    stem = class_name[: -len("Server")] if class_name.endswith("Server") else class_name
    return etl_name_for(re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", stem or class_name))


def _runtime_text(args: argparse.Namespace) -> str:
    """The spec that starts SERVER's class in the runtime image."""
    try:
        cls = load_server_class(args.name)
    except LoadError as exc:
        raise CommandError(str(exc)) from None
    message = deploy.init_message(
        cls,
        args.etl_name or name_for_class(cls.__name__),
        image=args.runtime,
        dependencies=args.package,
        os_packages=args.os_package,
        comm_type=args.comm,
        init_timeout=args.init_timeout,
        obj_timeout=args.obj_timeout,
        direct_put=not args.no_direct_put,
        direct_file_access=args.direct_fqn,
        env=parse_env(args.env),
    )
    return deploy.spec_text(message)


def _image_text(args: argparse.Namespace) -> str:
    """The spec that starts your own image."""
    for flag, value in (
        ("--name", args.etl_name),
        ("--package", args.package),
        ("--os-package", args.os_package),
        ("--direct-fqn", args.direct_fqn),
    ):
        if value:
            raise CommandError(f"{flag} goes with --runtime (your own image installs its own)")
    return specs.render(
        args.name,
        args.image,
        comm=args.comm,
        support_direct_put=not args.no_direct_put,
        init_timeout=args.init_timeout,
        obj_timeout=args.obj_timeout,
        env=parse_env(args.env),
    )


def run_init(args: argparse.Namespace) -> int:
    """Write a new spec file."""

    try:
        text = _runtime_text(args) if args.runtime else _image_text(args)
    except (specs.SpecError, deploy.DeployError) as exc:
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
