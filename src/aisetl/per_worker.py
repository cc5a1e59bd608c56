"""Serving a server class built in each worker process (after its GPU is pinned).

``aisetl serve`` uses this when ``AISETL_GPUS`` names GPUs: each worker process sets
``CUDA_VISIBLE_DEVICES`` to its own GPU and only then builds the server, so ``__init__`` loads
the model onto that GPU (see :mod:`aisetl.gpus`). Every framework: the standard library and
FastAPI servers through :func:`aisetl.workers.run_workers`, Flask through gunicorn's workers.
"""

from __future__ import annotations

import logging

from aisetl import gpus
from aisetl.config import Settings
from aisetl.server import ETLServer
from aisetl.workers import bind_socket, run_workers

_logger = logging.getLogger("aisetl.serve")


def start_per_worker(cls: type[ETLServer], host: str, port: int, workers: int | None) -> None:
    """Serve ``cls`` on ``host:port`` with each worker building its own instance."""
    settings = Settings.from_env()  # bad settings stop here, before any worker starts
    count = workers or settings.num_workers or 1
    if count == 1:
        gpus.pin_from_env(0)
        server = cls(host=host, port=port)  # type: ignore[call-arg]
        server.start(workers=1)  # type: ignore[call-arg]
        return
    from aisetl.loader import framework_of

    _logger.info(
        "%s on %s:%d, %d worker(s), each building its own server (AISETL_GPUS=%s)",
        cls.__name__, host, port, count, settings.gpus,
    )  # fmt: skip
    if framework_of(cls) == "flask":
        from aisetl._gunicorn import run_gunicorn_built_per_worker
        from aisetl.flask_server import gunicorn_options

        bind_socket(host, port).close()  # a port in use: one clear error, no retries
        run_gunicorn_built_per_worker(
            lambda: cls(host=host, port=port).app,  # type: ignore[call-arg, attr-defined]
            gunicorn_options(settings, host, port, count),
        )
        return
    sock = bind_socket(host, port)

    def serve(listening: object) -> None:
        server = cls(host=host, port=port)  # type: ignore[call-arg]
        server.serve_socket(listening)  # type: ignore[attr-defined]

    run_workers(sock, count, serve, settings.grace_period, _logger)
