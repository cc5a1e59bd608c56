"""Run a WSGI app object under gunicorn, configured in code (no config file, no argv)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication

from aisetl.workers import tune_interpreter


class _EmbeddedApplication(BaseApplication):  # type: ignore[misc]
    """A gunicorn application around an app object built before the workers fork."""

    def __init__(self, app: Callable[..., Iterable[bytes]], options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # options newer gunicorn releases added are skipped
                self.cfg.set(key, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        return self._app


def run_gunicorn(app: Callable[..., Iterable[bytes]], options: dict[str, Any]) -> None:
    """Serve ``app`` with gunicorn until it is stopped by a signal."""
    tune_interpreter()
    _EmbeddedApplication(app, options).run()
