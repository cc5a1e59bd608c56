"""Command-line options several verbs share, and how their values are read."""

from __future__ import annotations

import argparse

from aisetl.cli.errors import CommandError
from aisetl.loader import FRAMEWORKS

SERVER_HELP = "path/to/server.py[:CLASS] or MODULE:CLASS"


def add_server(parser: argparse.ArgumentParser) -> None:
    """SERVER (positional) and ``--server`` (the framework of a plain ETLServer class)."""
    parser.add_argument("server", metavar="SERVER", help=SERVER_HELP)
    parser.add_argument(
        "--server",
        dest="framework",
        choices=sorted(FRAMEWORKS),
        help="framework for plain ETLServer classes (default: the class's own, else fastapi)",
    )


def add_spec(parser: argparse.ArgumentParser, *, choose: bool = True) -> None:
    """``--no-spec`` (and ``--spec FILE`` when ``choose``): the etl_spec.yaml beside SERVER."""
    if choose:
        parser.add_argument("--spec", metavar="FILE", help="etl_spec.yaml to use for SERVER")
    parser.add_argument(
        "--no-spec", action="store_true", help="ignore an etl_spec.yaml beside the server"
    )


def add_env(parser: argparse.ArgumentParser, what: str = "server variable") -> None:
    """``--env NAME=VALUE``, repeatable."""
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help=f"{what} (repeatable)"
    )


def parse_env(values: list[str]) -> dict[str, str]:
    """``--env`` values as a mapping; a value without ``=`` is a usage error."""
    env: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise CommandError(f"--env {value!r}: write NAME=VALUE")
        env[name] = text
    return env
