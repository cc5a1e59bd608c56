"""The ``aisetl`` command: one entry point, one module per verb."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aisetl import __version__
from aisetl.cli import bench, get, new, run, runtime, serve, spec
from aisetl.cli.errors import CommandError

#: Verb modules; each has ``register(subparsers)`` and sets ``handler`` on its parser.
VERBS = [serve, run, get, bench, new, spec, runtime]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="aisetl",
        description="Build, test and run AIStore ETL servers, with or without a cluster.",
    )
    parser.add_argument("--version", action="version", version=f"aisetl {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        verb.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aisetl`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandError as exc:
        print(f"aisetl {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
