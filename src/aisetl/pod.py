"""What a server process knows of its pod: how many workers share it and the metrics they share.

The process that forks workers (our supervisor, or gunicorn's arbiter) wraps the forking in
:func:`forking`; each worker calls :func:`worker_started` and, as it stops,
:func:`worker_stopping`; the forking process calls :func:`worker_exited` for each worker that
ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aisetl import metrics

_workers = 1


@contextlib.contextmanager
def forking(workers: int) -> Iterator[None]:
    """Around starting ``workers`` worker processes and serving until they stop."""
    global _workers
    _workers = max(workers, 1)
    with metrics.shared_folder():
        yield


def workers() -> int:
    """How many worker processes this pod runs (1 unless :func:`forking` said otherwise)."""
    return _workers


def worker_started() -> None:
    """In a worker, right after the fork."""
    metrics.worker_started()


def worker_stopping() -> None:
    """In a worker, as it stops serving: what it counted reaches the pod's metrics."""
    metrics.flush()


def worker_exited(pid: int) -> None:
    """In the forking process, after worker ``pid`` ended."""
    metrics.worker_exited(pid)
