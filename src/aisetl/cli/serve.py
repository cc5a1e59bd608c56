"""``aisetl serve``: start a server class on its production stack (what a container runs)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from aisetl import gpus
from aisetl.cli.errors import CommandError
from aisetl.config import ConfigError
from aisetl.loader import FRAMEWORKS, LoadError, bind_framework, load_server_class
from aisetl.per_worker import start_per_worker
from aisetl.protocol import DEFAULT_PORT


def register(subparsers: Any) -> None:
    """Add the ``serve`` verb."""
    parser = subparsers.add_parser(
        "serve",
        help="run a transformer's server (uvicorn, gunicorn or the standard library)",
        description=(
            "Start SERVER on its production stack: uvicorn for FastAPI, gunicorn for Flask, the "
            "standard-library server for http. SERVER is MODULE:CLASS or a file path "
            "(path/to/server.py[:CLASS]). A class built on plain ETLServer runs on any --server."
        ),
        epilog=(
            "It serves until SIGTERM or SIGINT, then finishes the objects in flight "
            "(AISETL_GRACE_PERIOD seconds at most).\n\n"
            "exit codes:\n"
            "  0    stopped by a signal after a graceful shutdown\n"
            "  1    could not listen (e.g. the port is in use)\n"
            "  2    bad input: SERVER does not import or has no server class, a bad --workers\n"
            "       or --threads, an invalid environment variable (the message names it)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "server_spec", metavar="SERVER", help="MODULE:CLASS or path/to/server.py[:CLASS]"
    )
    parser.add_argument(
        "--server",
        choices=sorted(FRAMEWORKS),
        help="framework (default: the class's own, else fastapi)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: NUM_WORKERS or 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per worker that handle objects (default 128)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, build and start the server; returns only when it stops."""

    if args.workers is not None and args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise CommandError("--threads must be at least 1")
        os.environ["AISETL_THREADS"] = str(args.threads)
    try:
        cls = bind_framework(load_server_class(args.server_spec), args.server)
    except LoadError as exc:
        raise CommandError(str(exc)) from None
    try:
        if gpus.wanted():  # each worker builds its server once it sees only its own GPU
            start_per_worker(cls, args.host, args.port, args.workers)
            return 0
        server = cls(host=args.host, port=args.port)  # type: ignore[call-arg]
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        print(f"aisetl serve: error: {exc}", file=sys.stderr)
        return 1
    try:
        server.start(workers=args.workers)  # type: ignore[call-arg]
    except OSError as exc:
        print(f"aisetl serve: error: {exc}", file=sys.stderr)
        return 1
    return 0
