"""``aisetl runtime``: the runtime image's entry point (a class from the environment)."""

from __future__ import annotations

import argparse
from typing import Any

from aisetl import runtime
from aisetl.cli.errors import CommandError
from aisetl.loader import FRAMEWORKS
from aisetl.protocol import DEFAULT_PORT

EPILOG = """\
environment:
  ETL_CLASS_PAYLOAD  base64 of a cloudpickled aisetl server class (aisetl.deploy writes it)
  ETL_CLASS          or MODULE:CLASS / path/to/server.py[:CLASS] of code in the image
  PACKAGES           comma-separated pip requirements, installed first (numpy>=1.24,<2,pillow)
  OS_PACKAGES        comma-separated system packages (apk on Alpine, apt-get on Debian)
  NUM_WORKERS        worker processes (the image sets 4)
  ETL_DIRECT_FQN     true: transform() gets the object's file path when the target has one

exit codes:
  0  stopped by a signal after a graceful shutdown
  1  the server could not start: one line on stderr says why (no or bad payload, not an
     aisetl server class, a failed pip/apk/apt-get install, __init__ raised, port in use)
"""


def register(subparsers: Any) -> None:
    """Add the ``runtime`` verb."""
    parser = subparsers.add_parser(
        "runtime",
        help="start the server class named by the environment (the runtime image's entry point)",
        description=(
            "Start the server class that ETL_CLASS_PAYLOAD (or ETL_CLASS) names, after "
            "installing PACKAGES and OS_PACKAGES, on its framework's production stack "
            "(uvicorn for FastAPI, gunicorn for Flask, the standard-library server for http)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        choices=sorted(FRAMEWORKS),
        help="framework for a class built on plain ETLServer (default fastapi)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: NUM_WORKERS or 1)"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the runtime; returns only when the server stops or could not start."""
    if args.workers is not None and args.workers < 1:
        raise CommandError("--workers must be at least 1")
    options = runtime.Options(
        host=args.host, port=args.port, framework=args.server, workers=args.workers
    )
    return runtime.run(options)
