"""gunicorn settings that make its workers one pod: shared metrics, our log lines.

gunicorn's arbiter forks and replaces the workers itself; these hooks tell
:mod:`aisetl.pod` about each worker (so one scrape gives the pod's totals), and its logger
sends gunicorn's records through the handler :mod:`aisetl.logs` installed (text or JSON).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from aisetl import logs, pod


class ETLGunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose records go to the root logger's handler (our format)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            logs.adopt(log)


def post_fork(_server: Any, _worker: Any) -> None:
    """In each new worker."""
    pod.worker_started()


def worker_exit(_server: Any, _worker: Any) -> None:
    """In a worker, as it exits."""
    pod.worker_stopping()


def child_exit(_server: Any, worker: Any) -> None:
    """In the arbiter, after a worker ended."""
    pod.worker_exited(worker.pid)


#: Added to the gunicorn options of :class:`aisetl.flask_server.FlaskServer`.
POD_OPTIONS: dict[str, Any] = {
    "logger_class": ETLGunicornLogger,
    "post_fork": post_fork,
    "worker_exit": worker_exit,
    "child_exit": child_exit,
}
