"""Make an app started by a plain ``uvicorn module:app`` safe for a target's keep-alive.

The reference's images start the server with ``uvicorn fastapi_server:fastapi_app ...``,
which keeps idle connections 5 s; a target keeps them 6 s (``net.http.idle_conn_time``) and
may reuse one just as uvicorn closes it: a plain EOF, which the target does not retry. The
app is built while uvicorn imports the module, inside a method of ``uvicorn.Config`` (``load``
or ``load_app``, by version); this finds that ``Config`` on the call stack and raises its
keep-alive before any connection is accepted.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType

#: The target's idle-connection timeout (PROTOCOL.md §14): a server must keep idle ones longer.
TARGET_IDLE_TIMEOUT = 6.0
_MAX_FRAMES = 64


def _loading_config() -> object | None:
    """The ``uvicorn.Config`` whose ``load()`` is importing the app right now, if any."""
    config_type: type | None = getattr(sys.modules.get("uvicorn.config"), "Config", None)
    if config_type is None:
        return None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        candidate: object = frame.f_locals.get("self")
        if isinstance(candidate, config_type):  # in Config.load (or load_app, by version)
            return candidate
        frame = frame.f_back
    return None


def raise_loading_keep_alive(keep_alive: float, logger: logging.Logger) -> bool:
    """Raise the loading uvicorn's idle keep-alive to ``keep_alive`` when it is too short.

    Returns whether it did. Outside ``uvicorn.Config.load`` (``aisetl serve``, tests, a user's
    own ``uvicorn.run`` with a Config built after the app) nothing changes.
    """
    config = _loading_config()
    if config is None:
        return False
    current = float(getattr(config, "timeout_keep_alive", keep_alive))
    if current > TARGET_IDLE_TIMEOUT:
        return False
    config.timeout_keep_alive = int(keep_alive)  # type: ignore[attr-defined]
    logger.info(
        "uvicorn keeps idle connections %g s, less than a target's %g s: raised to %d s "
        "(a --timeout-keep-alive above %g s is kept as given)",
        current,
        TARGET_IDLE_TIMEOUT,
        int(keep_alive),
        TARGET_IDLE_TIMEOUT,
    )
    return True
