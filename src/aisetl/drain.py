"""Whether this server process is draining: after SIGTERM it finishes the objects in flight,
and ``/health`` answers 503 meanwhile so the kubelet stops routing to it before it exits."""

from __future__ import annotations

import time
from collections.abc import Callable

_POLL = 0.05
_since: float | None = None
_reason = ""


def begin(reason: str) -> None:
    """This process stops for ``reason`` (e.g. ``SIGTERM``): /health answers 503 from now on."""
    global _since, _reason
    if _since is None:
        _since = time.monotonic()
        _reason = reason


def reason() -> str | None:
    """Why this process is draining, or ``None`` while it serves normally."""
    return _reason if _since is not None else None


def seconds() -> float:
    """How long it has been draining (0 when it is not)."""
    return 0.0 if _since is None else time.monotonic() - _since


def wait_idle(busy: Callable[[], int], grace: float) -> None:
    """Wait until ``busy()`` is 0 (nothing in flight) or ``grace`` seconds of draining passed."""
    while busy() > 0 and seconds() < grace:
        time.sleep(_POLL)


def then(action: Callable[[], None], busy: Callable[[], int], grace: float) -> Callable[[], None]:
    """``action`` once the objects in flight are done (see :func:`wait_idle`)."""

    def run() -> None:
        wait_idle(busy, grace)
        action()

    return run
