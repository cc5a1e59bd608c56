"""``aisetl serve``: start a server class on its production stack (what a container runs)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisetl import gpus
from aisetl.cli.errors import CommandError
from aisetl.config import ConfigError
from aisetl.loader import FRAMEWORKS, LoadError, bind_framework, load_server_class
from aisetl.per_worker import start_per_worker
from aisetl.protocol import DEFAULT_PORT

if TYPE_CHECKING:
    from aisetl.cli.local import LocalTarget


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
            "In a container (AIS_TARGET_URL set by AIStore) it listens on 0.0.0.0. On a laptop,\n"
            "without AIS_TARGET_URL, it listens on 127.0.0.1 (unless --host), starts an emulated\n"
            "target beside it that serves --data (default: the current folder) as bucket\n"
            "'local', so hpull and direct put work, and prints how to send it an object.\n\n"
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
    parser.add_argument(
        "--host",
        help="address to listen on (default 0.0.0.0 with AIS_TARGET_URL, else 127.0.0.1)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="without AIS_TARGET_URL: the folder the emulated target serves (default: .)",
    )
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
    in_cluster = bool(os.environ.get("AIS_TARGET_URL"))
    if in_cluster and args.data:
        raise CommandError("--data is for trying a server without a cluster: unset AIS_TARGET_URL")
    host = args.host or ("0.0.0.0" if in_cluster else "127.0.0.1")
    local = None if in_cluster else _start_local(args, cls.__name__, host)
    try:
        if local is not None:
            from aisetl.cli.local import instructions

            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            print(instructions(local, f"http://{shown}:{args.port}"), file=sys.stderr, flush=True)
        try:
            if gpus.wanted():  # each worker builds its server once it sees only its own GPU
                start_per_worker(cls, host, args.port, args.workers)
                return 0
            server = cls(host=host, port=args.port)  # type: ignore[call-arg]
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        try:
            server.start(workers=args.workers)  # type: ignore[call-arg]
        except OSError as exc:
            print(f"aisetl serve: error: {exc}", file=sys.stderr)
            return 1
    finally:
        if local is not None:
            local.close()
    return 0


def _start_local(args: argparse.Namespace, class_name: str, host: str) -> LocalTarget:
    """The emulated target of a local ``serve``; sets ``AIS_TARGET_URL`` for the server."""
    from aisetl.cli.local import start
    from aisetl.cli.new import etl_name_for

    folder = Path(args.data or ".").resolve()
    if not folder.is_dir():
        raise CommandError(f"--data {args.data}: no such folder")
    local = start(folder, etl_name_for(class_name), host, args.port)
    os.environ["AIS_TARGET_URL"] = local.target_url
    os.environ.setdefault("DIRECT_PUT", "true")
    return local
